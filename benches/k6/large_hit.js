// Large object hits: a 1 MiB cached response read by a few keep-alive
// clients. Runs against any proxy:
//
//   k6 run -e TARGET=http://127.0.0.1:8080/cached/1m benches/k6/large_hit.js
//
// Options: TARGET, VUS (default 10), DURATION (default 20s), EXPECT_BYTES
// (default 1048576). Thresholds: no failed request, every body complete.
import http from 'k6/http'
import { check } from 'k6'

const target = __ENV.TARGET || 'http://127.0.0.1:8080/cached/1m'
const expectBytes = parseInt(__ENV.EXPECT_BYTES || '1048576')

export const options = {
  scenarios: {
    large: { executor: 'constant-vus', vus: parseInt(__ENV.VUS || '10'), duration: __ENV.DURATION || '20s' },
  },
  thresholds: { http_req_failed: ['rate==0'], checks: ['rate==1'] },
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
}

export function setup () { http.get(target) }

export default function () {
  const res = http.get(target, { responseType: 'binary' })
  check(res, {
    'status is 200': (r) => r.status === 200,
    'full body': (r) => r.body.byteLength === expectBytes,
  })
}
