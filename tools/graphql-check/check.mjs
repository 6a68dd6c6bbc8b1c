// Validates schema.graphql with graphql-js (an implementation independent of async-graphql) and
// every GraphQL operation the documentation shows against it, so examples cannot drift from the
// schema. Operations come from fenced ```graphql blocks and from the "query":"…" strings inside
// sh/bash/shell/json blocks (JSON-unescaped). Each operation of a block is validated on its own,
// with the block's fragments, so a block may list several anonymous operations.
//
// Usage: node check.mjs [--schema FILE] [MARKDOWN…]
//   defaults: <repo>/schema.graphql and <repo>/README.md, <repo>/docs/*.md
// Exit status: 0 when the schema and every operation are valid, 1 otherwise (each problem is
// printed as file:line: message), 2 on a usage error.

import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Kind, Source, buildSchema, parse, validate, validateSchema } from "graphql";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

function parseArgs(argv) {
  let schema = join(root, "schema.graphql");
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--schema") {
      schema = argv[++i];
      if (!schema) usage("--schema needs a file");
    } else if (argv[i].startsWith("-")) {
      usage(`unknown option ${argv[i]}`);
    } else {
      files.push(argv[i]);
    }
  }
  if (files.length === 0) {
    files.push(join(root, "README.md"));
    const docs = join(root, "docs");
    for (const name of readdirSync(docs).sort()) {
      if (name.endsWith(".md")) files.push(join(docs, name));
    }
  }
  return { schema, files };
}

function usage(message) {
  console.error(`graphql-check: ${message}\nusage: node check.mjs [--schema FILE] [MARKDOWN…]`);
  process.exit(2);
}

/** Fenced blocks: { lang, text, line } where line is the 1-based line of the block's first line. */
export function fencedBlocks(markdown) {
  const blocks = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)/.exec(lines[i]);
    if (!open) continue;
    const fence = open[2];
    const body = [];
    let j = i + 1;
    while (j < lines.length && !lines[j].trimStart().startsWith(fence)) body.push(lines[j++]);
    blocks.push({ lang: open[3].toLowerCase(), text: body.join("\n"), line: i + 2 });
    i = j;
  }
  return blocks;
}

/** The GraphQL documents a markdown file shows: { text, line }. */
export function operations(markdown) {
  const found = [];
  for (const block of fencedBlocks(markdown)) {
    if (block.lang === "graphql" || block.lang === "gql") {
      found.push({ text: block.text, line: block.line });
    } else if (["sh", "bash", "shell", "console", "json", "jsonc"].includes(block.lang)) {
      // A JSON string: quotes inside are \" (in shell single quotes they are sent as such).
      const re = /"query"\s*:\s*"((?:[^"\\\n]|\\.)*)"/g;
      for (const m of block.text.matchAll(re)) {
        const line = block.line + block.text.slice(0, m.index).split("\n").length - 1;
        let text;
        try {
          text = JSON.parse(`"${m[1]}"`);
        } catch (e) {
          found.push({ text: null, line, error: `the "query" string is not valid JSON: ${e.message}` });
          continue;
        }
        found.push({ text, line });
      }
    }
  }
  return found;
}

/** One document against the schema: { operations: how many it holds, problems: [{ line, message }] }. */
export function check(schema, doc) {
  if (doc.text === null) return { operations: 1, problems: [{ line: doc.line, message: doc.error }] };
  let ast;
  try {
    ast = parse(new Source(doc.text));
  } catch (e) {
    return { operations: 1, problems: [{ line: doc.line + (e.locations?.[0]?.line ?? 1) - 1, message: e.message }] };
  }
  const fragments = ast.definitions.filter((d) => d.kind === Kind.FRAGMENT_DEFINITION);
  const ops = ast.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  if (ops.length === 0) return { operations: 0, problems: [{ line: doc.line, message: "no operation in the block" }] };
  const problems = [];
  for (const op of ops) {
    // Fragments used by another operation of the block are not "unused" for this one.
    const single = { kind: Kind.DOCUMENT, definitions: [op, ...fragments] };
    for (const error of validate(schema, single)) {
      if (error.message.startsWith("Fragment") && error.message.includes("is never used")) continue;
      const at = error.locations?.[0]?.line ?? op.loc?.startToken.line ?? 1;
      problems.push({ line: doc.line + at - 1, message: error.message });
    }
  }
  return { operations: ops.length, problems };
}

function main() {
  const { schema: schemaPath, files } = parseArgs(process.argv.slice(2));
  let failures = 0;
  let schema;
  try {
    schema = buildSchema(readFileSync(schemaPath, "utf8"));
  } catch (e) {
    console.error(`${schemaPath}: ${e.message}`);
    process.exit(1);
  }
  for (const error of validateSchema(schema)) {
    console.error(`${schemaPath}: ${error.message}`);
    failures++;
  }
  if (failures > 0) process.exit(1);
  let checked = 0;
  for (const file of files) {
    const name = relative(process.cwd(), file) || file;
    for (const doc of operations(readFileSync(file, "utf8"))) {
      const { operations: count, problems } = check(schema, doc);
      checked += count;
      for (const p of problems) {
        console.error(`${name}:${p.line}: ${p.message}`);
        failures++;
      }
    }
  }
  if (failures > 0) {
    console.error(`graphql-check: ${failures} problem(s) in ${checked} documented operation(s)`);
    process.exit(1);
  }
  console.log(`graphql-check: the schema is valid and all ${checked} documented operation(s) validate against it`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
