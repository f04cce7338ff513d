// An independent OpenID provider for the federation tests: panva's oidc-provider
// (OpenID-certified), configured from one JSON argument:
//   {"port": N, "issuer": "http://127.0.0.1:N", "clients": [...], "accounts": {id: claims}}
// Accounts sign in through the library's development interactions (any password):
// the tests drive its login and consent forms. Prints "ready" once listening.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(process.argv[2]);
const accounts = config.accounts ?? {};

function privateJwk(type, options, extra) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), use: 'sig', ...extra };
}

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: {
    keys: [
      privateJwk('rsa', { modulusLength: 2048 }, { kid: 'op-rs256', alg: 'RS256' }),
      privateJwk('ec', { namedCurve: 'P-256' }, { kid: 'op-es256', alg: 'ES256' }),
    ],
  },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: ['openid', 'offline_access', 'profile', 'realname'],
  claims: {
    openid: ['sub'],
    profile: ['name'],
    realname: ['id_number', 'trust_level', 'acr_level'],
  },
  // scope claims in the ID token too (the city reads them there)
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  // the city's jwks_uri is on loopback in the tests, which oidc-provider's SSRF guard
  // refuses: lift the guard for 127.0.0.1 only
  fetch: (url, options) => {
    if (new URL(url).hostname === '127.0.0.1') delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
  },
  async findAccount(_ctx, id) {
    if (!accounts[id]) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...accounts[id] }) };
  },
});

provider.on('server_error', (_ctx, error) => console.error('server_error', error));
// why a token request was refused (the tests' op.log)
provider.on('grant.error', (_ctx, error) => console.error('grant.error', error.message, error.error_description ?? '', error.error_detail ?? '', error.cause?.message ?? '', error.cause?.error_description ?? ''));
provider.listen(config.port, '127.0.0.1', () => console.log('ready'));
