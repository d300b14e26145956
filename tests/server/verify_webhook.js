// Verifies one Standard Webhooks delivery with the reference implementation (the npm package
// `standardwebhooks`), independent of sd35's C++ signer. Reads from stdin
//   {"secret": "<base64 or whsec_…>", "headers": {"webhook-id": …, …}, "body": "<raw body>"}
// and exits 0 when the signature verifies, 1 when it does not, 2 on bad usage.
"use strict";
const { Webhook } = require("standardwebhooks");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  let req;
  try {
    req = JSON.parse(input);
  } catch (e) {
    console.error("verify_webhook: stdin is not JSON: " + e.message);
    process.exit(2);
  }
  try {
    new Webhook(req.secret).verify(req.body, req.headers);
    console.log("verified");
    process.exit(0);
  } catch (e) {
    console.log("not verified: " + e.message);
    process.exit(1);
  }
});
