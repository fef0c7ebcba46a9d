#!/usr/bin/env node
// Creates a pruning job, watches its events until it ends, and prints the result. The client is
// built from proto/ when it starts (@grpc/proto-loader), so it always matches the API.
//
//   NODE_PATH=DIR/node_modules node shears_example.js --server HOST:PORT --tls-ca ca.crt --token TOKEN \
//       --model file:///models/llama --method magnitude --sparsity 0.5 --output file:///models/out
//
// --tls-ca dials over TLS trusting that CA (plaintext without it, for a server on loopback); the
// token (--token, or $SHEARS_TOKEN) goes with every call as "authorization: Bearer TOKEN".
// Exit status: 0 when the job succeeded, 1 otherwise.
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function flags(argv) {
  const out = {server: 'localhost:50051', method: 'magnitude', sparsity: '0.5', token: process.env.SHEARS_TOKEN || ''};
  for (let i = 2; i + 1 < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  if (!out.model || !out.output) throw new Error('--model and --output are required');
  return out;
}

function call(stub, method, request, metadata) {
  return new Promise((resolve, reject) =>
    stub[method](request, metadata, {deadline: Date.now() + 30000}, (err, reply) => (err ? reject(err) : resolve(reply))));
}

async function main() {
  const args = flags(process.argv);
  const root = path.join(__dirname, '..', '..', 'proto');
  // Field names as in the protos (snake_case), enums by name, int64 as strings, oneofs marked.
  const options = {includeDirs: [root], keepCase: true, enums: String, longs: String, defaults: true, oneofs: true};
  const definition = protoLoader.loadSync(path.join(root, 'shears/v1/pruning.proto'), options);
  const shears = grpc.loadPackageDefinition(definition).shears.v1;
  const credentials = args['tls-ca'] ? grpc.credentials.createSsl(fs.readFileSync(args['tls-ca']))
                                     : grpc.credentials.createInsecure();
  const stub = new shears.Pruning(args.server, credentials);
  // Metadata by hand rather than call credentials, which gRPC sends over TLS only.
  const metadata = new grpc.Metadata();
  if (args.token) metadata.add('authorization', `Bearer ${args.token}`);
  const spec = {
    model_uri: args.model,
    method: 'METHOD_' + args.method.toUpperCase().replace(/-/g, '_'),
    target_sparsity: Number(args.sparsity),
    output: {uri: args.output},
  };
  let job = await call(stub, 'CreateJob', {spec}, metadata);
  console.log(`created ${job.id}`);
  // A stream ended UNAVAILABLE or CANCELLED (a server replica draining or dying) goes on from the last event
  // seen, through whichever replica answers next.
  let after = 0;
  for (let tries = 0; ; ) {
    try {
      await new Promise((resolve, reject) => {
        const events = stub.WatchJob({job_id: job.id, after_sequence: after}, metadata);
        events.on('data', (event) => {
          after = Number(event.sequence);
          tries = 0;
          if (event.progress) console.log(`  ${event.progress.stage}: ${event.progress.message}`);
          if (event.state_change) console.log(`  state ${event.state_change.state}`);
        });
        events.on('end', resolve);
        events.on('error', reject);
      });
      break;
    } catch (err) {
      // CANCELLED too: this client cancels nothing, so it is a server that stopped mid-call.
      if ((err.code !== grpc.status.UNAVAILABLE && err.code !== grpc.status.CANCELLED) || ++tries > 30) throw err;
      console.error(`  watch interrupted (${err.details}); resuming after event ${after}`);
      await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** Math.min(tries, 6), 5000)));
    }
  }
  job = await call(stub, 'GetJob', {job_id: job.id}, metadata);
  console.log(`${job.id} ${job.state}`);
  if (job.state !== 'JOB_STATE_SUCCEEDED') {
    console.log(`error: ${job.error}`);
    return 1;
  }
  const r = job.result;
  console.log(`achieved sparsity ${r.achieved_sparsity.toFixed(4)} of ${r.parameters_before} parameters`);
  for (const a of r.artifacts) console.log(`  ${a.uri} ${a.size_bytes} bytes sha256 ${a.sha256}`);
  return 0;
}

main().then((code) => process.exit(code), (err) => {
  console.error(`shears_example: ${err.message}`);
  process.exit(1);
});
