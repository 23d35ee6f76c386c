// pushgo's /mcp driven by the TypeScript SDK's client over Streamable HTTP: connect, list the
// tools, call one, print what came back as one JSON document on stdout.
//
//   node ts_sdk_client.mjs SDK_PREFIX v1|v2 URL ERA TOOL ARGS_JSON
//
// SDK_PREFIX is the npm --prefix the SDK was installed into (scripts/mcp-node-tools.sh
// ts-sdk); v1 is @modelcontextprotocol/sdk, v2 @modelcontextprotocol/client. ERA is legacy
// (the initialize handshake) or modern (v2 only: pinned to 2026-07-28). The bearer token, if
// any, comes from the environment (MCP_BEARER_TOKEN) so it stays out of the process list.
import { createRequire } from "node:module";
import { join } from "node:path";

const [prefix, line, url, era, tool, argsJson] = process.argv.slice(2);
const require = createRequire(join(prefix, "package.json"));

function load() {
  if (line === "v1") {
    const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
    const { StreamableHTTPClientTransport } = require(
      "@modelcontextprotocol/sdk/client/streamableHttp.js");
    return { Client, StreamableHTTPClientTransport };
  }
  if (line === "v2") {
    return require("@modelcontextprotocol/client");
  }
  throw new Error(`unknown SDK line ${line}`);
}

async function main() {
  const { Client, StreamableHTTPClientTransport } = load();
  const headers = {};
  if (process.env.MCP_BEARER_TOKEN) {
    headers.Authorization = `Bearer ${process.env.MCP_BEARER_TOKEN}`;
  }
  const options = {};
  if (era === "modern") {
    options.versionNegotiation = { mode: { pin: "2026-07-28" } };
  }
  const client = new Client({ name: `pushgo-tests-ts-sdk-${line}`, version: "1.0.0" }, options);
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  await client.connect(transport);
  const tools = (await client.listTools()).tools;
  const result = await client.callTool({ name: tool, arguments: JSON.parse(argsJson) });
  const doc = {
    server: client.getServerVersion() ?? null,
    era: typeof client.getProtocolEra === "function" ? client.getProtocolEra() ?? null : null,
    tools,
    result,
  };
  await client.close();
  process.stdout.write(JSON.stringify(doc) + "\n");
}

const deadline = setTimeout(() => {
  process.stderr.write("ts_sdk_client: no answer within 30 s\n");
  process.exit(4);
}, 30000);
deadline.unref();

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`ts_sdk_client: ${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
