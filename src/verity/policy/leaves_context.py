"""Checks about the context of a request: device posture, network, time, trust, grants."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from ..model import AccessRequest, ObligationKind
from . import ast, values
from .checks import Check, Test, fmt_set
from .clock import BUCKET, clock_for, describe_local

_FLAG_TEXT = {
    "managed": (
        "device is managed",
        "device is not managed by your organisation",
        "use a company-managed device or enroll this one",
    ),
    "disk_encrypted": (
        "disk encryption",
        "device disk is not encrypted",
        "enable disk encryption (FileVault, BitLocker or LUKS)",
    ),
    "screen_lock": ("screen lock", "device has no screen lock", "turn on the screen lock"),
    "firewall": ("firewall on", "device firewall is off", "turn on the firewall"),
}
_NO_DEVICE = "no known device: this request did not come from an enrolled device"


class DeviceFlagCheck(Check):
    node: ast.DeviceFlag

    def build(self) -> Test:
        flag, want = self.node.flag, self.node.value
        self.code = f"device.{flag}"
        self.hint = _FLAG_TEXT[flag][2] if want else None
        return lambda r: r.device is not None and getattr(r.device, flag) is want

    def inline(self, name: str) -> tuple[str, Mapping[str, object]]:
        return f"(d is not None and d.{self.node.flag} is {self.node.value})", {}

    def expected(self) -> str:
        text = _FLAG_TEXT[self.node.flag][0]
        return text if self.node.value else f"not {text}"

    def observed(self, request: AccessRequest) -> str:
        return (
            "(no device)"
            if request.device is None
            else str(getattr(request.device, self.node.flag))
        )

    def message(self, request: AccessRequest) -> str:
        if request.device is None:
            return _NO_DEVICE
        if self.node.value:
            return _FLAG_TEXT[self.node.flag][1]
        return f"this rule applies only when {self.expected()}"


class DeviceOsCheck(Check):
    code = "device.os"
    hint = "use a device with a supported operating system"
    node: ast.DeviceOs

    def build(self) -> Test:
        types = self.node.types
        return lambda r: r.device is not None and r.device.os_type in types

    def expected(self) -> str:
        return f"operating system {fmt_set(self.node.types)}"

    def observed(self, request: AccessRequest) -> str:
        return "(no device)" if request.device is None else request.device.os_type


class DeviceMinOsCheck(Check):
    code = "device.os_version"
    hint = "update your operating system"
    node: ast.DeviceMinOs

    def build(self) -> Test:
        minimums = {os: values.version_tuple(v) for os, v in self.node.minimums.items()}
        parse = values.version_tuple

        def test(r: AccessRequest) -> bool:
            d = r.device
            if d is None:
                return False
            floor = minimums.get(d.os_type)
            have = parse(d.os_version) if floor is not None else None
            return have is not None and floor is not None and have >= floor

        return test

    def expected(self) -> str:
        return "OS at least " + ", ".join(
            f"{os} {v}" for os, v in sorted(self.node.minimums.items())
        )

    def observed(self, request: AccessRequest) -> str:
        d = request.device
        return "(no device)" if d is None else f"{d.os_type} {d.os_version or '(unknown version)'}"

    def message(self, request: AccessRequest) -> str:
        d = request.device
        if d is None:
            return _NO_DEVICE
        floor = self.node.minimums.get(d.os_type)
        if floor is None:
            supported = fmt_set(self.node.minimums)
            return f"operating system {d.os_type} is not supported (supported: {supported})"
        return (
            f"{d.os_type} {d.os_version or '(unknown version)'} is older than the required {floor}"
        )


class IpRangesCheck(Check):
    code = "network.ip"
    hint = "connect from the corporate network or VPN"
    node: ast.IpRanges

    def build(self) -> Test:
        v4 = tuple(
            (int(n.network_address), int(n.netmask)) for n in self.node.networks if n.version == 4
        )
        v6 = tuple(
            (int(n.network_address), int(n.netmask)) for n in self.node.networks if n.version == 6
        )

        def test(r: AccessRequest) -> bool:
            ip = r.network.ip
            if ip is None:
                return False
            x = int(ip)
            nets = v4 if isinstance(ip, ipaddress.IPv4Address) else v6
            return any(x & mask == net for net, mask in nets)

        return test

    def expected(self) -> str:
        return f"client address in {fmt_set(self.node.networks)}"

    def observed(self, request: AccessRequest) -> str:
        return str(request.network.ip) if request.network.ip else "(unknown address)"


class RegionsCheck(Check):
    code = "network.region"
    node: ast.Regions

    def build(self) -> Test:
        regions = self.node.values
        return lambda r: r.network.region in regions

    def inline(self, name: str) -> tuple[str, Mapping[str, object]]:
        return f"n.region in {name}", {name: self.node.values}

    def expected(self) -> str:
        return f"region {fmt_set(self.node.values)}"

    def observed(self, request: AccessRequest) -> str:
        return request.network.region or "(unknown region)"

    def message(self, request: AccessRequest) -> str:
        allowed = fmt_set(self.node.values)
        return f"access from region {self.observed(request)} is not allowed (allowed: {allowed})"


class TimeWindowCheck(Check):
    code = "time.window"
    hint = "try again during the allowed hours"
    node: ast.TimeWindow

    def build(self) -> Test:
        clock, days, start, end = (
            clock_for(self.node.tz),
            self.node.days,
            self.node.start,
            self.node.end,
        )
        local, offsets = clock.local, clock.offsets

        def test(r: AccessRequest) -> bool:
            t = r.time
            offset = offsets.get(int(t // BUCKET))
            if offset is None:
                day, minute = local(t)
            else:
                days_since_epoch, seconds = divmod(int(t // 1) + offset, 86400)
                day, minute = (days_since_epoch + 3) % 7, seconds // 60
            if day not in days:
                return False
            return start <= minute < end if start < end else (minute >= start or minute < end)

        return test

    def expected(self) -> str:
        return self.node.text

    def observed(self, request: AccessRequest) -> str:
        return f"{describe_local(request.time, self.node.tz)} {self.node.tz}"

    def message(self, request: AccessRequest) -> str:
        return f"outside the allowed hours ({self.node.text}); it is now {self.observed(request)}"


class MinTrustCheck(Check):
    code = "trust.score"
    hint = "sign in again to restore trust"
    obligation = ObligationKind.STEP_UP_MFA
    node: ast.MinTrust

    def build(self) -> Test:
        floor = self.node.value
        return lambda r: r.trust_score is not None and r.trust_score >= floor

    def inline(self, name: str) -> tuple[str, Mapping[str, object]]:
        return f"(r.trust_score is not None and r.trust_score >= {name})", {name: self.node.value}

    def expected(self) -> str:
        return f"trust score at least {self.node.value}"

    def observed(self, request: AccessRequest) -> str:
        return "(unknown)" if request.trust_score is None else str(request.trust_score)

    def message(self, request: AccessRequest) -> str:
        return (
            f"session trust score {self.observed(request)} is below the required {self.node.value}"
        )


class JitGrantCheck(Check):
    code = "jit.grant"
    obligation = ObligationKind.REQUEST_ACCESS
    node: ast.JitGrant

    def build(self) -> Test:
        grant = self.node.grant
        self.hint = f"request just-in-time access '{grant}'"

        def test(r: AccessRequest) -> bool:
            expires = r.grants.get(grant)
            return expires is not None and expires > r.time

        return test

    def expected(self) -> str:
        return f"an active just-in-time grant '{self.node.grant}'"

    def observed(self, request: AccessRequest) -> str:
        expires = request.grants.get(self.node.grant)
        if expires is None:
            return "(no grant)"
        left = int(expires - request.time)
        return f"expires in {left}s" if left > 0 else f"expired {-left}s ago"

    def message(self, request: AccessRequest) -> str:
        return f"requires {self.expected()} ({self.observed(request)})"
