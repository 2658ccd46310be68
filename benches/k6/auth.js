// Authenticated route: requests with a valid API key get through (and are
// cached per identity), requests with a wrong or missing key get 401. Runs
// against a Palisade route with an api_key policy:
//
//   k6 run -e TARGET=http://127.0.0.1:8080/private/1k -e API_KEY=... benches/k6/auth.js
//
// Options: TARGET, API_KEY (valid key), HEADER (default X-Api-Key), VUS
// (default 50), DURATION (default 20s), BAD_SHARE (share of requests sent
// with a wrong key, default 0.1).
import http from 'k6/http'
import { check } from 'k6'

const header = __ENV.HEADER || 'X-Api-Key'
const badShare = parseFloat(__ENV.BAD_SHARE || '0.1')

export const options = {
  scenarios: {
    auth: { executor: 'constant-vus', vus: parseInt(__ENV.VUS || '50'), duration: __ENV.DURATION || '20s' },
  },
  thresholds: { checks: ['rate==1'], 'http_req_duration{kind:good}': ['p(99)<50'] },
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
}

export default function () {
  const bad = Math.random() < badShare
  const key = bad ? 'not-a-valid-key' : __ENV.API_KEY
  const res = http.get(__ENV.TARGET || 'http://127.0.0.1:8080/private/1k', {
    headers: { [header]: key },
    tags: { kind: bad ? 'bad' : 'good' },
    responseCallback: http.expectedStatuses(200, 401),
  })
  check(res, {
    'valid key: 200, wrong key: 401': (r) => r.status === (bad ? 401 : 200),
  })
}
