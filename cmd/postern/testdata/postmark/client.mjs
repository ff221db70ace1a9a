// Postmark's official Node client against a running postern serve: the
// one change from Postmark is the API address. Prints one JSON object
// with what each call answered, for cmd/postern's TestPostmarkNodeClient.
import * as postmark from "postmark";

const client = new postmark.ServerClient(process.env.POSTMARK_SERVER_TOKEN, {
  useHttps: false,
  requestHost: process.env.POSTERN_API, // "127.0.0.1:8080" instead of api.postmarkapp.com
});

const png = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex").toString("base64");
const out = {};

out.sendEmail = await client.sendEmail({
  From: "Café App <app@example.com>",
  To: "Zoë <zoe@example.net>",
  Subject: "Hello from the Node client",
  TextBody: "Plain text, with accents: é à ü.",
  HtmlBody: '<p>HTML with an inline image: <img src="cid:logo.png"></p>',
  Tag: "node",
  Metadata: { client: "postmark.js" },
  Attachments: [
    { Name: "notes.txt", Content: Buffer.from("some notes\n").toString("base64"), ContentType: "text/plain" },
    { Name: "logo.png", Content: png, ContentType: "image/png", ContentID: "cid:logo.png" },
  ],
  MessageStream: "outbound",
});

out.sendEmailBatch = await client.sendEmailBatch([
  { From: "app@example.com", To: "one@example.net", Subject: "batch 1", TextBody: "first" },
  { From: "app@example.com", To: "two@example.net", Subject: "batch 2", HtmlBody: "<b>second</b>" },
  { From: "not an address", To: "three@example.net", Subject: "batch 3", TextBody: "third" },
]);

try {
  await client.sendEmail({ From: "app@elsewhere.example", To: "x@example.net", Subject: "s", TextBody: "t" });
  out.refused = { thrown: false };
} catch (e) {
  out.refused = { thrown: true, name: e.name, code: e.code, statusCode: e.statusCode, message: e.message };
}

const created = await client.createWebhook({
  Url: "https://hooks.example.org/postmark",
  MessageStream: "outbound",
  HttpAuth: { Username: "hook", Password: "secret" },
  HttpHeaders: [{ Name: "X-App", Value: "crm" }],
  Triggers: { Delivery: { Enabled: true }, Bounce: { Enabled: true, IncludeContent: true } },
});
out.createWebhook = created;
out.getWebhooks = await client.getWebhooks({ MessageStream: "outbound" });
out.getWebhook = await client.getWebhook(created.ID);
out.editWebhook = await client.editWebhook(created.ID, { Url: "https://hooks.example.org/v2", Triggers: { Delivery: { Enabled: false } } });
out.deleteWebhook = await client.deleteWebhook(created.ID);
out.afterDelete = await client.getWebhooks();

out.createMessageStream = await client.createMessageStream({
  ID: "newsletter", Name: "Newsletter", MessageStreamType: "Broadcasts", Description: "Monthly news",
});
out.editMessageStream = await client.editMessageStream("newsletter", { Name: "The Newsletter" });
out.getMessageStream = await client.getMessageStream("newsletter");
out.sendBroadcast = await client.sendEmail({
  From: "app@example.com", To: "reader@example.net", Subject: "News", TextBody: "Monthly news.", MessageStream: "newsletter",
});
out.createSuppressions = await client.createSuppressions("newsletter", { Suppressions: [{ EmailAddress: "nomore@example.net" }] });
out.getSuppressions = await client.getSuppressions("newsletter");
out.deleteSuppressions = await client.deleteSuppressions("newsletter", { Suppressions: [{ EmailAddress: "nomore@example.net" }] });
out.afterDeleteSuppressions = await client.getSuppressions("newsletter");
out.archiveMessageStream = await client.archiveMessageStream("newsletter");
out.getMessageStreams = await client.getMessageStreams({ IncludeArchivedStreams: true });
out.unarchiveMessageStream = await client.unarchiveMessageStream("newsletter");

console.log(JSON.stringify(out));
