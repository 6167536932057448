// Runs one browser scenario and prints its result as JSON on the last line of stdout.
//   node harness/browser/driver.mjs <scenario module> '<JSON request>'
// The module's default export gets (request, helpers) and returns a JSON-serialisable result; the request
// carries at least {url, out} (the ComfyUI server and a folder for screenshots).
import path from "node:path";
import { pathToFileURL } from "node:url";
import * as helpers from "./comfy_page.mjs";

const [modulePath, requestText] = process.argv.slice(2);
const request = JSON.parse(requestText);
const scenario = (await import(pathToFileURL(path.resolve(modulePath)).href)).default;
const browser = await helpers.launch(request.viewport ? { viewport: request.viewport } : {});
let result, failed = false;
try {
  result = await scenario(request, { ...helpers, context: browser.context });
} catch (error) {
  failed = true;
  result = { error: String(error.stack ?? error) };
} finally {
  await browser.close();
}
process.stdout.write(`\n${JSON.stringify(result)}\n`);
process.exit(failed ? 1 : 0);
