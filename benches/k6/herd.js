// Thundering herd: 200 clients ask for the same cold key at the same moment;
// the origin takes 200 ms. A coalescing cache sends one request upstream and
// answers all 200 from it. Runs against any proxy:
//
//   k6 run -e TARGET=http://127.0.0.1:8080/slow/herd-1 benches/k6/herd.js
//
// Use a key never requested before (benches/compare.sh adds a run id). The
// origin's request count is what proves coalescing: compare.sh reads it from
// the origin. Thresholds: every request succeeds with the same body.
import http from 'k6/http'
import { check } from 'k6'
import { Counter } from 'k6/metrics'

const distinct = new Counter('distinct_bodies')
const seen = {}

export const options = {
  scenarios: {
    herd: { executor: 'per-vu-iterations', vus: parseInt(__ENV.VUS || '200'), iterations: 1, maxDuration: '30s' },
  },
  thresholds: { http_req_failed: ['rate==0'], checks: ['rate==1'] },
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
}

export default function () {
  const res = http.get(__ENV.TARGET || 'http://127.0.0.1:8080/slow/herd')
  check(res, { 'status is 200': (r) => r.status === 200 })
  if (!seen[res.body]) {
    seen[res.body] = true
    distinct.add(1)
  }
}
