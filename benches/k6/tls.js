// TLS: cached 1 KiB responses over HTTPS, on keep-alive connections and with
// a new connection (a full handshake) for every request. Runs against any
// proxy:
//
//   k6 run -e TARGET=https://127.0.0.1:8443/cached/1k benches/k6/tls.js
//
// Options: TARGET, MODE (keepalive | handshake, default keepalive), VUS
// (default 50), DURATION (default 20s), ADDRESS (connect there instead of
// resolving TARGET's host, which is still sent as SNI and Host: e.g.
// `-e TARGET=https://site.test:8443/ -e ADDRESS=127.0.0.1`). Certificates
// are not verified (a test certificate on loopback).
import http from 'k6/http'
import { check } from 'k6'

const mode = __ENV.MODE || 'keepalive'
const target = __ENV.TARGET || 'https://127.0.0.1:8443/cached/1k'
const hosts = {}
if (__ENV.ADDRESS) {
  hosts[target.split('/')[2].split(':')[0]] = __ENV.ADDRESS
}

export const options = {
  insecureSkipTLSVerify: true,
  hosts: hosts,
  noConnectionReuse: mode === 'handshake',
  scenarios: {
    tls: { executor: 'constant-vus', vus: parseInt(__ENV.VUS || '50'), duration: __ENV.DURATION || '20s' },
  },
  thresholds: { http_req_failed: ['rate==0'], checks: ['rate==1'] },
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
}

export default function () {
  const res = http.get(target)
  check(res, {
    'status is 200': (r) => r.status === 200,
    'TLS used': (r) => r.tls_version !== undefined && r.tls_version !== '',
  })
}
