// Failover scenario: steady GET traffic through a pool while the driver
// (benches/failover.sh) kills one backend and brings it back. Runs against
// any proxy:
//
//   k6 run -e TARGET=http://127.0.0.1:8080/ benches/k6/failover.js
//
// Options (environment): TARGET (URL), VUS (default 20), DURATION (default
// 30s), BACKENDS (comma-separated X-Backend values to count, default a,b,c).
//
// Thresholds: not one failed request (GETs are safe to retry, so a proxy
// that retries on another backend hides the failure completely) and p99
// under 250 ms. The `backend_*` counters show how traffic moved (the origins
// answer with an X-Backend header).
import http from 'k6/http'
import { check } from 'k6'
import { Counter } from 'k6/metrics'

const target = __ENV.TARGET || 'http://127.0.0.1:8080/'
// Custom metrics must exist before the test starts (k6's init context).
const perBackend = {}
for (const name of (__ENV.BACKENDS || 'a,b,c').split(',')) {
  perBackend[name] = new Counter(`backend_${name}`)
}
const otherBackend = new Counter('backend_other')

export const options = {
  scenarios: {
    steady: {
      executor: 'constant-vus',
      vus: parseInt(__ENV.VUS || '20'),
      duration: __ENV.DURATION || '30s',
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    http_req_duration: ['p(99)<250'],
  },
}

export default function () {
  const res = http.get(target)
  check(res, { 'status is 200': (r) => r.status === 200 })
  const counter = perBackend[res.headers['X-Backend']] || otherBackend
  counter.add(1)
}
