// ort_bench.js — ONNX Runtime's side of bench/run.sh: inference latency of an ONNX model with
// onnxruntime-node (CPU, all graph optimisations, sequential execution), installed into
// bench/node_modules by run.sh.
//
// usage: node ort_bench.js MODEL --name NAME --width W --batch 1,64,256 --threads 1,2 [--time S]
//
// For every (threads, batch) pair: a session with intraOpNumThreads = threads, 3 warm-up runs,
// then runs until S seconds have passed (at least 5, at most 10000). One line per pair, as
// bench_onyx prints:
//   RESULT ort NAME infer BATCH THREADS MEDIAN_MS P90_MS ITERS
'use strict';
const path = require('path');
const ort = require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));

function parseArgs(argv) {
  const a = { model: null, name: 'model', width: 0, batch: [1, 64, 256], threads: [1], time: 1.0 };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--name': a.name = v; i++; break;
      case '--width': a.width = parseInt(v, 10); i++; break;
      case '--batch': a.batch = v.split(',').map(Number); i++; break;
      case '--threads': a.threads = v.split(',').map(Number); i++; break;
      case '--time': a.time = parseFloat(v); i++; break;
      default:
        if (a.model === null && !argv[i].startsWith('-')) a.model = argv[i];
        else throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!a.model || !(a.width > 0)) throw new Error('usage: ort_bench.js MODEL --width W ...');
  return a;
}

function nowMs() {
  return Number(process.hrtime.bigint()) / 1e6;
}

function report(name, batch, threads, times) {
  times.sort((x, y) => x - y);
  const n = times.length;
  const med = n % 2 ? times[(n - 1) / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
  const p90 = times[Math.min(n - 1, Math.floor((n * 9) / 10))];
  console.log(`RESULT ort ${name} infer ${batch} ${threads} ${med.toFixed(4)} ${p90.toFixed(4)} ${n}`);
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  for (const batch of a.batch) {
    for (const threads of a.threads) {
      const session = await ort.InferenceSession.create(a.model, {
        executionProviders: ['cpu'],
        graphOptimizationLevel: 'all',
        executionMode: 'sequential',
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
      });
      const data = new Float32Array(batch * a.width);
      for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
      const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, [batch, a.width]) };
      for (let i = 0; i < 3; i++) await session.run(feeds);
      const times = [];
      const start = nowMs();
      while (times.length < 10000) {
        const t0 = nowMs();
        await session.run(feeds);
        const t1 = nowMs();
        times.push(t1 - t0);
        if (times.length >= 5 && t1 - start >= a.time * 1000) break;
      }
      report(a.name, batch, threads, times);
      await session.release();
    }
  }
}

main().catch((e) => {
  console.error(`ort_bench: ${e.message}`);
  process.exit(1);
});
