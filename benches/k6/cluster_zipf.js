// A Zipf workload over a fleet: REQUESTS requests (default 50 000) over KEYS
// keys (default 10 000, popularity ∝ 1/rank), each sent to the next node of
// NODES (comma-separated base URLs) in turn, as an L4 balancer would, all
// with the same Host. benches/cluster.sh runs it against three sharded
// nodes and three independent ones and counts the origin's requests.
//
//   k6 run -e NODES=http://127.0.0.1:8081,http://127.0.0.1:8082 benches/k6/cluster_zipf.js
import http from 'k6/http'
import { check } from 'k6'
import exec from 'k6/execution'

const nodes = (__ENV.NODES || 'http://127.0.0.1:8080').split(',')
const keys = parseInt(__ENV.KEYS || '10000')
const requests = parseInt(__ENV.REQUESTS || '50000')
const vus = parseInt(__ENV.VUS || '20')

// Cumulative Zipf(s = 1) weights, searched by bisection.
const cdf = new Float64Array(keys)
let total = 0
for (let i = 0; i < keys; i++) { total += 1 / (i + 1); cdf[i] = total }

function zipfKey(u) {
  const target = u * total
  let lo = 0, hi = keys - 1
  while (lo < hi) { const mid = (lo + hi) >> 1; if (cdf[mid] < target) lo = mid + 1; else hi = mid }
  return lo
}

// A fixed pseudo-random sequence, so that both runs ask for the same keys.
function uniform(n) {
  let x = (n + 1) * 2654435761 % 4294967296
  x ^= x >>> 13; x = Math.imul(x, 1274126177) >>> 0; x ^= x >>> 16
  return (x >>> 0) / 4294967296
}

export const options = {
  scenarios: {
    zipf: { executor: 'shared-iterations', vus: vus, iterations: requests, maxDuration: '5m' },
  },
  thresholds: { http_req_failed: ['rate==0'], checks: ['rate==1'] },
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
}

export default function () {
  const n = exec.scenario.iterationInTest
  const key = zipfKey(uniform(n))
  const res = http.get(`${nodes[n % nodes.length]}/k/${key}`, { headers: { Host: 'fleet.example' } })
  check(res, { 'status is 200': (r) => r.status === 200 })
}
