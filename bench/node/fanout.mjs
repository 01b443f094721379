// AWS's published fan-out approach (the simple-websockets-chat-app "sendmessage"
// handler, SDK v3): read the channel's connections from DynamoDB, then
// Promise.all over PostToConnection for every one, a 410 deleting the item.
// The bench (bench/node_baseline.py) runs it against the same stand-ins as ours:
//   node fanout.mjs <management endpoint> <warm-up table> <partition key> <sort key> <channel prefix>
// warms up, prints {"ready": true}, then runs one invocation per line "<size> <table>" read
// from stdin and prints its wall and CPU seconds (the whole process's CPU) as one JSON line.
import { createInterface } from "node:readline";
import { DynamoDBClient, QueryCommand, DeleteItemCommand } from "@aws-sdk/client-dynamodb";
import {
  ApiGatewayManagementApiClient,
  PostToConnectionCommand,
} from "@aws-sdk/client-apigatewaymanagementapi";

const [endpoint, warmTable, partitionKey, sortKey, channelPrefix] = process.argv.slice(2);
const ddb = new DynamoDBClient({}); // endpoint from AWS_ENDPOINT_URL_DYNAMODB

// The sample's handler, with the sample's structure: a new Management API client
// per invocation, every connection posted at once.
export const handler = async (event) => {
  let items = [];
  let ExclusiveStartKey;
  do {
    const page = await ddb.send(
      new QueryCommand({
        TableName: event.table,
        KeyConditionExpression: "#p = :c",
        ExpressionAttributeNames: { "#p": partitionKey, "#id": sortKey },
        ExpressionAttributeValues: { ":c": { S: event.channel } },
        ProjectionExpression: "#id",
        ExclusiveStartKey,
      }),
    );
    items = items.concat(page.Items);
    ExclusiveStartKey = page.LastEvaluatedKey;
  } while (ExclusiveStartKey);

  const api = new ApiGatewayManagementApiClient({ endpoint: event.endpoint });
  const postData = event.data;
  const postCalls = items.map(async (item) => {
    const connectionId = item[sortKey];
    try {
      await api.send(new PostToConnectionCommand({ ConnectionId: connectionId.S, Data: postData }));
    } catch (e) {
      if (e.$metadata && e.$metadata.httpStatusCode === 410) {
        await ddb.send(
          new DeleteItemCommand({
            TableName: event.table,
            Key: { [partitionKey]: { S: event.channel }, [sortKey]: connectionId },
          }),
        );
      } else {
        throw e;
      }
    }
  });
  await Promise.all(postCalls);
  return { statusCode: 200, body: "Data sent.", posted: items.length };
};

const data = JSON.stringify({
  type: "message",
  message: { id: 123, body: "Hello, see you at 10", sender: "user_42" },
  thread: { booking_id: "b-2025-0001", unread: 1 },
  broadcast: true,
});

// A warm container: one invocation on a small channel first (clients, sockets, JIT).
await handler({ channel: `${channelPrefix}warm`, table: warmTable, endpoint, data });
console.log(JSON.stringify({ ready: true, node: process.version }));

// Then one invocation per line on stdin (a channel size), one JSON line back for each.
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const [size, table] = line.trim().split(" ");
  if (!size) continue;
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  const answer = await handler({ channel: `${channelPrefix}${size}`, table, endpoint, data });
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  const used = process.cpuUsage(cpu);
  if (answer.posted !== Number(size)) throw new Error(`posted ${answer.posted} of ${size}`);
  console.log(JSON.stringify({ size: Number(size), wall_s: wallMs / 1000, cpu_s: (used.user + used.system) / 1e6 }));
}
