// A producer and consumer of order-worker written from its AsyncAPI document alone, with amqplib.
//
// Everything it knows of the service comes from the document: the create queue and how to publish to it,
// the example command, the events exchange with its exact type and arguments, the routing keys, which
// AMQP properties carry what, and the fields an event has. A deployment may rename queues and exchanges;
// NAMES maps the document's names to the deployment's.
//
//   ASYNCAPI=worker/schemas/asyncapi.json AMQP_URL=amqp://guest:guest@127.0.0.1:5672 \
//   NAMES='{"orders.create":"...","orders.events":"...","orders.events.unrouted":"..."}' \
//   PROVIDER=0trace COMMAND_ID=node-0001 node tests/contract/consumer.mjs
//
// It prints one JSON line: what it published and every event it received for its command, then exits 0
// once the order's first event arrived (non-zero with a reason otherwise).

import fs from "node:fs";
import amqp from "amqplib";

const doc = JSON.parse(fs.readFileSync(process.env.ASYNCAPI, "utf8"));
const names = JSON.parse(process.env.NAMES || "{}");
const renamed = (name) => names[name] ?? name;
const provider = process.env.PROVIDER || "0trace";
const commandId = process.env.COMMAND_ID;
const timeoutMs = Number(process.env.TIMEOUT_MS || 60000);

function fail(reason) {
  console.log(JSON.stringify({ ok: false, reason }));
  process.exit(1);
}

const ref = (pointer) => pointer.replace("#/", "").split("/").reduce((node, key) => node[key], doc);

// The create command: the channel, its queue binding and the example message of this provider.
const createChannel = doc.channels.createOrder;
const queue = renamed(createChannel.bindings.amqp.queue.name);
const createMessage = Object.values(createChannel.messages)
  .map((m) => ref(m.$ref))
  .find((m) => m.payload.properties.kwargs && m.examples?.[0]?.payload.kwargs.provider === provider);
if (!createMessage) fail(`no create message for ${provider} in the document`);
const envelope = structuredClone(createMessage.examples[0].payload);
envelope.queue_name = queue;
envelope.kwargs.command_id = commandId;
envelope.message_id = `${commandId}-msg`;
envelope.message_timestamp = Date.now();

// The events exchange, declared with exactly the documented type and arguments, and a queue of ours.
const eventsChannel = doc.channels.orderEvents;
const exchange = eventsChannel.bindings.amqp.exchange;
const exchangeArguments = Object.fromEntries(
  Object.entries(exchange["x-arguments"] || {}).map(([key, value]) => [key, renamed(value)]),
);
if (!eventsChannel.parameters.provider.enum.includes(provider)) fail(`${provider} is not a documented provider`);
const routingKey = eventsChannel.address.replace("{provider}", provider).replace("{type}", "*");
const eventMessages = Object.values(eventsChannel.messages).map((m) => ref(m.$ref));
const typedEvent = eventMessages.find((m) => {
  const schema = m.payload.$ref ? ref(m.payload.$ref) : m.payload;
  return schema.properties.provider?.const === provider;
});
if (!typedEvent) fail(`no event message for ${provider} in the document`);
const eventSchema = typedEvent.payload.$ref ? ref(typedEvent.payload.$ref) : typedEvent.payload;

const connection = await amqp.connect(process.env.AMQP_URL);
const channel = await connection.createConfirmChannel();
const timer = setTimeout(() => fail(`no event for ${commandId} within ${timeoutMs} ms`), timeoutMs);
await channel.assertExchange(renamed(exchange.name), exchange.type, {
  durable: exchange.durable,
  autoDelete: exchange.autoDelete,
  arguments: exchangeArguments,
});
const { queue: mine } = await channel.assertQueue("", { exclusive: true });
await channel.bindQueue(mine, renamed(exchange.name), routingKey);

const received = [];
await channel.consume(mine, (message) => {
  const body = JSON.parse(message.content.toString("utf8"));
  channel.ack(message);
  if (message.properties.correlationId !== commandId) return;
  const missing = eventSchema.required.filter((field) => !(field in body));
  received.push({
    type: body.type,
    seq: body.seq,
    status: body.status,
    schema_version: body.schema_version,
    message_id_is_event_id: message.properties.messageId === body.event_id,
    type_property: message.properties.type,
    content_type: message.properties.contentType,
    missing_required: missing,
  });
  clearTimeout(timer);
  console.log(JSON.stringify({ ok: true, published: { queue, command_id: commandId }, routingKey, received }));
  connection.close().then(() => process.exit(0));
});

channel.on("return", () => fail("the command was returned: no queue by that name"));
channel.publish("", queue, Buffer.from(JSON.stringify(envelope)), {
  persistent: true,
  mandatory: true,
  contentType: createMessage.contentType,
  messageId: envelope.message_id,
});
await channel.waitForConfirms();
