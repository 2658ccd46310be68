// Steady traffic while the configuration is reloaded again and again
// (benches/reload.sh drives the reloads). Every request must succeed: a
// reload swaps the routing table atomically and drops nothing.
//
//   k6 run -e TARGET=http://127.0.0.1:8080/ -e DURATION=40s benches/k6/reload.js
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

const served = {
  a: new Counter('served_by_a'),
  b: new Counter('served_by_b'),
};

export const options = {
  scenarios: {
    steady: {
      executor: 'constant-vus',
      vus: Number(__ENV.VUS || 20),
      duration: __ENV.DURATION || '40s',
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    http_req_duration: ['p(99)<50'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
};

export default function () {
  const res = http.get(__ENV.TARGET || 'http://127.0.0.1:8080/');
  const backend = res.headers['X-Backend'];
  check(res, {
    'status 200': (r) => r.status === 200,
    'served by a or b': () => backend === 'a' || backend === 'b',
  });
  if (served[backend]) served[backend].add(1);
}
