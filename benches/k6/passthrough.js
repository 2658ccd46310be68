// Miss / pass-through: every response is `Cache-Control: no-store`, so the
// proxy forwards every request. Runs against any proxy:
//
//   k6 run -e TARGET=http://127.0.0.1:8080/nostore benches/k6/passthrough.js
//
// Options: TARGET, VUS (default 50), DURATION (default 20s).
import http from 'k6/http'
import { check } from 'k6'

export const options = {
  scenarios: {
    pass: { executor: 'constant-vus', vus: parseInt(__ENV.VUS || '50'), duration: __ENV.DURATION || '20s' },
  },
  thresholds: { http_req_failed: ['rate==0'], checks: ['rate==1'], http_req_duration: ['p(99)<100'] },
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
}

export default function () {
  const res = http.get(__ENV.TARGET || 'http://127.0.0.1:8080/nostore')
  check(res, { 'status is 200': (r) => r.status === 200 })
}
