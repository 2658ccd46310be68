// Scores a results file of the http-cache-tests suite.
//
//   node conformance-score.mjs SUITE_DIR RESULTS_JSON MIN_REQUIRED MIN_OPTIMAL
//
// Prints pass counts per suite part (the core tests, and the separate
// Surrogate-Control tests) and kind, lists every failing required and
// optimal test, and exits 1 below the minimums (core suite).
import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const [suiteDir, resultsFile, minRequired, minOptimal] = process.argv.slice(2)
const load = async (file) => (await import(pathToFileURL(path.resolve(suiteDir, file)).href)).default
const core = await load('tests/index.mjs')
const surrogate = await load('tests/surrogate-control.mjs')
const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))

const tally = {}
const failures = []
for (const [part, suites] of [['core', core], ['surrogate-control', [surrogate]]]) {
  for (const suite of suites) {
    for (const test of suite.tests) {
      const kind = test.kind || 'required'
      const key = `${part} ${kind}`
      tally[key] ??= { pass: 0, total: 0 }
      tally[key].total++
      const result = results[test.id]
      if (result === true) {
        tally[key].pass++
      } else if (kind !== 'check') {
        const why = result === undefined ? 'not run (browser-only or skipped dependency)' : result.join(': ')
        failures.push(`  ${part.padEnd(17)} ${kind.padEnd(8)} ${test.id} — ${why}`)
      }
    }
  }
}

console.log('\nscore (pass / total)')
for (const [key, { pass, total }] of Object.entries(tally)) {
  console.log(`  ${key.padEnd(26)} ${String(pass).padStart(3)} / ${total}`)
}
console.log(`\nfailing required and optimal tests (${failures.length}):`)
console.log(failures.join('\n'))

const required = tally['core required'].pass
const optimal = tally['core optimal'].pass
if (required < Number(minRequired) || optimal < Number(minOptimal)) {
  console.log(`\nBELOW TARGET: core required ${required} (min ${minRequired}), core optimal ${optimal} (min ${minOptimal})`)
  process.exit(1)
}
console.log(`\nok: core required ${required} >= ${minRequired}, core optimal ${optimal} >= ${minOptimal}`)
