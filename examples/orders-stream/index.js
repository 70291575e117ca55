/**
 * Order totals from a Kafka topic, written exactly as for AWS Lambda's self-managed Kafka
 * event source.
 *
 * Each invocation carries a batch of records of one partition under
 * event.records["<topic>-<partition>"], in offset order, each value base64-encoded JSON:
 *
 *   {"id": "o-1001", "customer": "c-7", "amount": 19.99, "currency": "EUR"}
 *
 * The handler adds up the orders of the batch and logs one summary line per partition. A
 * record that is not a valid order stops that partition's batch: it is reported in
 * batchItemFailures (itemIdentifier = its offset), so everything before it counts as done and
 * everything from it on is retried, never counted twice. A record that keeps failing ends up
 * in the Trigger's onFailure topic, and the orders behind it flow on.
 */

const parseOrder = (text) => {
  const order = JSON.parse(text);
  if (order === null || typeof order !== 'object') throw new Error('not a JSON object');
  if (typeof order.id !== 'string' || order.id === '') throw new Error('no order id');
  if (typeof order.amount !== 'number' || !Number.isFinite(order.amount) || order.amount < 0) {
    throw new Error(`order ${order.id} has no valid amount`);
  }
  return { id: order.id, cents: Math.round(order.amount * 100), currency: order.currency || 'EUR' };
};

exports.handler = async (event) => {
  const batchItemFailures = [];
  for (const [partition, records] of Object.entries(event.records)) {
    const totals = {};
    let counted = 0;
    for (const record of records) {
      let order;
      try {
        order = parseOrder(Buffer.from(record.value, 'base64').toString('utf8'));
      } catch (err) {
        console.error(`malformed order at ${partition}@${record.offset}: ${err.message}`);
        batchItemFailures.push({ itemIdentifier: String(record.offset) });
        break;
      }
      totals[order.currency] = (totals[order.currency] || 0) + order.cents;
      counted += 1;
    }
    if (counted > 0) {
      const summary = {
        message: 'orders aggregated',
        partition,
        firstOffset: records[0].offset,
        lastOffset: records[counted - 1].offset,
        orders: counted,
        totals: Object.fromEntries(
          Object.entries(totals).map(([currency, cents]) => [currency, (cents / 100).toFixed(2)]),
        ),
      };
      console.log(JSON.stringify(summary));
    }
  }
  return { batchItemFailures };
};
