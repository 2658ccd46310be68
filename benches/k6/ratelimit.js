// Rate-limit scenario: clients offering more than a route's limit, checking
// that the accepted rate is the configured one and everything else is a
// proper 429. Runs against any proxy whose route at TARGET is limited to
// RATE requests per second for all clients together (key: route), e.g.
// Palisade with `benches/ratelimit.sh` or nginx's limit_req.
//
//   k6 run -e TARGET=http://127.0.0.1:8080/ -e RATE=500 benches/k6/ratelimit.js
//
// Options (environment): TARGET, RATE (configured limit, req/s), OFFERED
// (arrival rate k6 sends, default 2 × RATE), DURATION (default 30s).
//
// Thresholds: no status other than 200 and 429; every 429 carries
// Retry-After; the accepted rate is within 5 % of RATE; the 429 share is
// what the offered load implies (1 − RATE/OFFERED, ± 5 points).
import http from 'k6/http'
import { check } from 'k6'
import { Counter, Rate } from 'k6/metrics'

const target = __ENV.TARGET || 'http://127.0.0.1:8080/'
const rate = parseInt(__ENV.RATE || '500')
const offered = parseInt(__ENV.OFFERED || String(rate * 2))
const duration = __ENV.DURATION || '30s'
const seconds = parseInt(duration)

const accepted = new Counter('accepted')
const limited = new Rate('limited')
const expectedShare = 1 - rate / offered

export const options = {
  scenarios: {
    over_the_limit: {
      executor: 'constant-arrival-rate',
      rate: offered,
      timeUnit: '1s',
      duration,
      preAllocatedVUs: 50,
      maxVUs: 200,
    },
  },
  thresholds: {
    checks: ['rate==1'],
    // Accepted requests per second over the run, within 5 % of RATE (the
    // initial burst adds at most `burst` requests; keep it small).
    accepted: [`count>=${Math.floor(rate * seconds * 0.95)}`, `count<=${Math.ceil(rate * seconds * 1.05)}`],
    limited: [`rate>=${(expectedShare - 0.05).toFixed(3)}`, `rate<=${(expectedShare + 0.05).toFixed(3)}`],
  },
}

export default function () {
  const res = http.get(target, { responseCallback: http.expectedStatuses(200, 429) })
  check(res, {
    'status is 200 or 429': (r) => r.status === 200 || r.status === 429,
    '429 has Retry-After': (r) => r.status !== 429 || r.headers['Retry-After'] !== undefined,
  })
  if (res.status === 200) accepted.add(1)
  limited.add(res.status === 429)
}
