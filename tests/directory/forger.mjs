// A hostile identity provider for the directory tests: over TLS on loopback, it publishes a
// discovery document and the public half of the test's signing key, and its token endpoint
// answers every code with the ID token the test wrote into a file just before (forged,
// misdirected, expired, replayed...), so that the appliance's own sign-in code meets each
// one. Arguments: a JSON file with issuer, port, cert, key, signing_key {pem, kid} and
// id_token_file.
import fs from 'node:fs';
import https from 'node:https';
import crypto from 'node:crypto';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const jwk = crypto.createPublicKey(fs.readFileSync(cfg.signing_key.pem)).export({ format: 'jwk' });
const documents = {
  '/.well-known/openid-configuration': {
    issuer: cfg.issuer,
    authorization_endpoint: `${cfg.issuer}/auth`,
    token_endpoint: `${cfg.issuer}/token`,
    jwks_uri: `${cfg.issuer}/jwks`,
  },
  '/jwks': { keys: [{ ...jwk, kid: cfg.signing_key.kid, alg: 'ES256', use: 'sig' }] },
};
const server = https.createServer({ cert: fs.readFileSync(cfg.cert), key: fs.readFileSync(cfg.key) }, (req, res) => {
  const path = req.url.split('?')[0];
  res.setHeader('content-type', 'application/json');
  if (documents[path]) {
    res.end(JSON.stringify(documents[path]));
  } else if (path === '/token' && req.method === 'POST') {
    req.resume();
    req.on('end', () => {
      const idToken = fs.readFileSync(cfg.id_token_file, 'utf8').trim();
      res.end(JSON.stringify({ access_token: 'opaque', token_type: 'Bearer', expires_in: 60, id_token: idToken }));
    });
  } else {
    res.statusCode = 404;
    res.end('{}');
  }
});
server.listen(cfg.port, '127.0.0.1', () => console.log(`listening ${cfg.issuer}`));
