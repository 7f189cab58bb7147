// A third-party OpenID Provider (panva/oidc-provider) for Verity's interop test.
// Usage: node provider.mjs CONFIG.json   (port, issuer, rp_url, client, jwks, users)
// Logs "listening" on stdout once it accepts connections.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const users = config.users;

const provider = new Provider(config.issuer, {
  clients: [{
    client_id: config.client_id,
    client_secret: config.client_secret,
    redirect_uris: [`${config.rp_url}/verity/callback`],
    post_logout_redirect_uris: [`${config.rp_url}/`],
    backchannel_logout_uri: `${config.rp_url}/verity/backchannel-logout`,
    backchannel_logout_session_required: true,
    require_auth_time: true,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    id_token_signed_response_alg: 'ES256',
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: config.jwks,
  cookies: { keys: [config.cookie_key] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    groups: ['groups', 'realm_access'],
    profile: ['name'],
  },
  conformIdTokenClaims: false,
  // The relying party listens on 127.0.0.1; oidc-provider's SSRF guard refuses
  // special-use addresses for back-channel calls, so the test drops that dispatcher.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: { IdToken: 300, AccessToken: 300, RefreshToken: 3600, Session: 3600, Grant: 3600 },
  findAccount: async (ctx, id) => {
    const user = users[id];
    if (!user) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...user }) };
  },
});

provider.on('backchannel.error', (ctx, err, client, accountId, sid) => {
  console.log(`backchannel.error ${client.clientId}: ${err.message} ${err.cause ?? ""}`);
});
provider.on('backchannel.success', (ctx, client) => {
  console.log(`backchannel.success ${client.clientId}`);
});

provider.listen(config.port, '127.0.0.1', () => {
  console.log('listening');
});
