// Mixed traffic: 90 % of requests read cacheable keys drawn from a Zipf
// distribution (a few hot objects, a long tail), 10 % are misses (no-store).
// Runs against any proxy:
//
//   k6 run -e BASE=http://127.0.0.1:8080 benches/k6/mixed.js
//
// Options: BASE, KEYS (default 10000), ZIPF_S (default 1.1), VUS (default
// 100), DURATION (default 30s), RATE (requests per second: constant arrival
// rate instead of a closed loop of VUS clients). Paths: BASE/obj/<n> (cacheable, 1 KiB) and
// BASE/nostore?<n>.
import http from 'k6/http'
import { check } from 'k6'

const base = __ENV.BASE || 'http://127.0.0.1:8080'
const keys = parseInt(__ENV.KEYS || '10000')
const s = parseFloat(__ENV.ZIPF_S || '1.1')

// Cumulative Zipf distribution over ranks 1..keys.
const cdf = new Float64Array(keys)
let total = 0
for (let k = 1; k <= keys; k++) { total += 1 / Math.pow(k, s); cdf[k - 1] = total }
for (let k = 0; k < keys; k++) cdf[k] /= total

function zipf () {
  const u = Math.random()
  let lo = 0
  let hi = keys - 1
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (cdf[mid] < u) lo = mid + 1; else hi = mid
  }
  return lo + 1
}

export const options = {
  scenarios: {
    mixed: __ENV.RATE
      ? { executor: 'constant-arrival-rate', rate: parseInt(__ENV.RATE), timeUnit: '1s', duration: __ENV.DURATION || '30s', preAllocatedVUs: parseInt(__ENV.VUS || '100'), maxVUs: 2 * parseInt(__ENV.VUS || '100') }
      : { executor: 'constant-vus', vus: parseInt(__ENV.VUS || '100'), duration: __ENV.DURATION || '30s' },
  },
  thresholds: { http_req_failed: ['rate==0'], checks: ['rate==1'], http_req_duration: ['p(99)<100'] },
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
}

export default function () {
  const miss = Math.random() < 0.1
  const res = miss
    ? http.get(`${base}/nostore?${Math.floor(Math.random() * 1e9)}`, { tags: { kind: 'miss' } })
    : http.get(`${base}/obj/${zipf()}`, { tags: { kind: 'hit' } })
  check(res, { 'status is 200': (r) => r.status === 200 })
}
