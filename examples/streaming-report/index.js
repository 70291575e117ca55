// A sales report streamed as CSV while it is generated: the client reads the first rows at
// once, and the function never holds the whole report. Written exactly as for Lambda's
// response streaming (the global `awslambda` object, Node's stream pipeline).
//
// GET /report?rows=100000  → text/csv, one line per row, sent as the rows are made
const { pipeline } = require('node:stream/promises');
const { Readable } = require('node:stream');

const REGIONS = ['north', 'south', 'east', 'west'];

async function* csv(rows) {
  yield 'day,region,orders,revenue\n';
  let lines = [];
  for (let i = 0; i < rows; i += 1) {
    const orders = (i * 7919) % 97;
    lines.push(`${1 + (i % 28)},${REGIONS[i % REGIONS.length]},${orders},${(orders * 12.5).toFixed(2)}\n`);
    if (lines.length === 1000) {
      yield lines.join(''); // a piece of about 25 KiB: pipeline() waits while the client is slow
      lines = [];
    }
  }
  if (lines.length) yield lines.join('');
}

exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
  const query = event.queryStringParameters || {};
  const rows = Math.min(Number(query.rows) || 10000, 10_000_000);
  const body = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 200,
    headers: { 'Content-Type': 'text/csv', 'Content-Disposition': 'attachment; filename="report.csv"' },
  });
  await pipeline(Readable.from(csv(rows)), body);
});
