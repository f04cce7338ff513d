// A relying party built on panva's openid-client (an OpenID-certified RP library),
// driven step by step by tests/interop/test_openid_client.py.
//
// Protocol: one JSON object per line on stdin, {"op": "...", ...arguments}; one JSON
// object per line on stdout, {"ok": true, "result": ...} or {"ok": false, "error": ...}.
// Requests are handled one at a time, in order. Diagnostics go to stderr only.
//
// The browser part of the flow (sign-in, consent) is done by the Python test; this
// process only does what a relying party's back end does, and only through the
// library's own API, so every check the library makes (issuer, RFC 9207 "iss", state,
// PKCE, ID token claims and signature, userinfo "sub", ...) is applied to the provider.

import { createInterface } from 'node:readline';
import * as client from 'openid-client';

const configs = new Map(); // name -> { config, tamper: { next: string | null } }
const flows = new Map(); // flow id -> { verifier, state, nonce }
let flowCounter = 0;

async function clientAuth(auth) {
  switch (auth.method) {
    case 'client_secret_basic':
      return client.ClientSecretBasic(auth.client_secret);
    case 'client_secret_post':
      return client.ClientSecretPost(auth.client_secret);
    case 'none':
      return client.None();
    case 'private_key_jwt':
      return privateKeyJwt(auth.jwk);
    default:
      throw new TypeError(`unknown client authentication method ${auth.method}`);
  }
}

// The client's ES256 private key, as a JWK made by the test.
async function privateKeyJwt(jwk) {
  const { kid, kty, crv, x, y, d } = jwk;
  const key = await crypto.subtle.importKey(
    'jwk',
    { kty, crv, x, y, d },
    { name: 'ECDSA', namedCurve: crv },
    false,
    ['sign'],
  );
  return client.PrivateKeyJwt({ key, kid });
}

// Flip the ID token's "sub" in a token response, keeping the original signature: a
// forged token that only the signature check can catch.
function b64urlJson(segment) {
  return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
}

async function tampered(response) {
  const body = await response.json();
  if (typeof body.id_token === 'string') {
    const [header, payload, signature] = body.id_token.split('.');
    const claims = b64urlJson(payload);
    claims.sub = `${claims.sub}-forged`;
    const forged = Buffer.from(JSON.stringify(claims)).toString('base64url');
    body.id_token = [header, forged, signature].join('.');
  }
  const headers = new Headers(response.headers);
  headers.delete('content-length');
  return new Response(JSON.stringify(body), {
    status: response.status,
    statusText: response.statusText,
    headers,
  });
}

function getConfig(name) {
  const entry = configs.get(name);
  if (!entry) throw new TypeError(`no client configuration named ${name}`);
  return entry;
}

function tokenSet(tokens) {
  return {
    access_token: tokens.access_token,
    token_type: tokens.token_type,
    expires_in: tokens.expiresIn(),
    refresh_token: tokens.refresh_token ?? null,
    id_token: tokens.id_token ?? null,
    scope: tokens.scope ?? null,
    claims: tokens.claims() ?? null,
  };
}

const ops = {
  // discovery() + the client's authentication method.
  async discover({ name, issuer, client_id, auth, metadata = {}, nonrepudiation = true }) {
    const authentication = await clientAuth(auth);
    const tamper = { next: null };
    const config = await client.discovery(new URL(issuer), client_id, metadata, authentication, {
      execute: [client.allowInsecureRequests], // the test server is http://127.0.0.1
      timeout: 10,
      [client.customFetch]: async (url, options) => {
        const response = await fetch(url, options);
        const endpoint = configs.get(name)?.config.serverMetadata().token_endpoint;
        if (tamper.next === 'id_token' && url === endpoint) {
          tamper.next = null;
          return tampered(response);
        }
        return response;
      },
    });
    if (nonrepudiation) {
      // also verify ID token signatures from the token endpoint against jwks_uri
      client.enableNonRepudiationChecks(config);
    }
    configs.set(name, { config, tamper });
    return { server: config.serverMetadata(), client: config.clientMetadata() };
  },

  // buildAuthorizationUrl() with PKCE S256, state and nonce.
  async authorization_url({ client: name, redirect_uri, scope, params = {} }) {
    const { config } = getConfig(name);
    const verifier = client.randomPKCECodeVerifier();
    const challenge = await client.calculatePKCECodeChallenge(verifier);
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri,
      scope,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state,
      nonce,
      ...params,
    });
    const flow = `flow-${++flowCounter}`;
    flows.set(flow, { verifier, state, nonce });
    return { url: url.href, flow, state, nonce, code_challenge: challenge };
  },

  // authorizationCodeGrant(): callback checks (iss, state), the code grant with the
  // PKCE verifier, and ID token validation (nonce, iss, aud, exp, iat, signature ...).
  // "checks" overrides the remembered state/nonce (negative controls) or adds maxAge
  // (then auth_time is required and checked); "tamper" forges the ID token in the token
  // response.
  async code_grant({ client: name, flow, callback_url, checks = {}, tamper = null }) {
    const { config, tamper: tamperState } = getConfig(name);
    const remembered = flows.get(flow);
    if (!remembered) throw new TypeError(`no flow ${flow}`);
    tamperState.next = tamper;
    try {
      const tokens = await client.authorizationCodeGrant(config, new URL(callback_url), {
        pkceCodeVerifier: remembered.verifier,
        expectedState: checks.expectedState ?? remembered.state,
        expectedNonce: checks.expectedNonce ?? remembered.nonce,
        ...(checks.maxAge !== undefined && { maxAge: checks.maxAge }),
        idTokenExpected: true,
      });
      return tokenSet(tokens);
    } finally {
      tamperState.next = null;
    }
  },

  async userinfo({ client: name, access_token, expected_sub }) {
    return client.fetchUserInfo(getConfig(name).config, access_token, expected_sub);
  },

  async refresh({ client: name, refresh_token }) {
    return tokenSet(await client.refreshTokenGrant(getConfig(name).config, refresh_token));
  },

  async introspect({ client: name, token, token_type_hint }) {
    const params = token_type_hint ? { token_type_hint } : {};
    return client.tokenIntrospection(getConfig(name).config, token, params);
  },

  async revoke({ client: name, token, token_type_hint }) {
    const params = token_type_hint ? { token_type_hint } : {};
    await client.tokenRevocation(getConfig(name).config, token, params);
    return {};
  },

  async client_credentials({ client: name, scope }) {
    const tokens = await client.clientCredentialsGrant(
      getConfig(name).config,
      scope ? { scope } : {},
    );
    return {
      access_token: tokens.access_token,
      token_type: tokens.token_type,
      expires_in: tokens.expiresIn(),
      scope: tokens.scope ?? null,
      refresh_token: tokens.refresh_token ?? null,
      id_token: tokens.id_token ?? null,
    };
  },

  async end_session_url({ client: name, params = {} }) {
    return { url: client.buildEndSessionUrl(getConfig(name).config, params).href };
  },
};

// Errors as JSON: the library's error code, the OAuth error, the causes' messages.
function describe(err) {
  const out = {
    name: err?.name ?? typeof err,
    message: String(err?.message ?? err),
    code: err?.code ?? null,
    error: err?.error ?? null,
    error_description: err?.error_description ?? null,
    status: err?.status ?? null,
    causes: [],
  };
  let cause = err?.cause;
  for (let depth = 0; cause !== undefined && depth < 5; depth += 1) {
    if (cause instanceof Error) {
      out.causes.push(`${cause.name}: ${cause.message}${cause.code ? ` (${cause.code})` : ''}`);
      cause = cause.cause;
    } else {
      let text;
      try {
        text = JSON.stringify(cause, (_, value) =>
          ArrayBuffer.isView(value) ? `<${value.byteLength} bytes>` : value,
        );
      } catch {
        text = String(cause);
      }
      out.causes.push(text.length > 2000 ? `${text.slice(0, 2000)}...` : text);
      break;
    }
  }
  if (err?.name === 'WWWAuthenticateChallengeError') {
    // a 401 with WWW-Authenticate: the OAuth error is in the (first) challenge
    out.challenges = err.cause ?? null;
    const parameters = out.challenges?.[0]?.parameters ?? {};
    out.error ??= parameters.error ?? null;
    out.error_description ??= parameters.error_description ?? null;
  }
  return out;
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let reply;
  try {
    const { op, ...args } = JSON.parse(line);
    if (op === 'exit') break;
    if (!Object.hasOwn(ops, op)) throw new TypeError(`unknown op ${op}`);
    reply = { ok: true, result: (await ops[op](args)) ?? null };
  } catch (err) {
    reply = { ok: false, error: describe(err) };
  }
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}
