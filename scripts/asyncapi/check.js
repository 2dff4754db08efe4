// Parses an AsyncAPI document with the official parser (@asyncapi/parser) and fails on any diagnostic of
// severity error. Also checks that the operation enum of `dcos.op.{account}.{operation}` lists exactly
// the operations of src/vocabulary.rs.
//
// A local `$ref` to a file that does not exist yet (a schema another change generates) is resolved to an
// open object and reported as a warning, so the rest of the document is still checked.
//
// Usage: node check.js <asyncapi.yaml> [<vocabulary.rs>]   (NODE_PATH names the parser's node_modules)
'use strict';

const fs = require('fs');
const path = require('path');
const { Parser, fromFile, DiagnosticSeverity } = require('@asyncapi/parser');

const [documentPath, vocabularyPath] = process.argv.slice(2);
if (!documentPath) {
  console.error('usage: node check.js <asyncapi.yaml> [<vocabulary.rs>]');
  process.exit(2);
}

const missing = new Set();
const placeholderForMissingFiles = {
  schema: 'file',
  order: 1,
  canRead: (uri) => !fs.existsSync(uri.href()),
  read: (uri) => {
    missing.add(path.relative(process.cwd(), uri.href()));
    return JSON.stringify({
      type: 'object',
      description: `placeholder: ${path.basename(uri.href())} does not exist yet`,
    });
  },
};

const SEVERITY = ['error', 'warning', 'info', 'hint'];

function where(diagnostic) {
  const at = diagnostic.path && diagnostic.path.length ? diagnostic.path.join('/') : '(document)';
  const line = diagnostic.range ? `:${diagnostic.range.start.line + 1}` : '';
  return `${at}${line}`;
}

function operationsInVocabulary(file) {
  const text = fs.readFileSync(file, 'utf8');
  const block = text.split('operations! {')[1];
  if (!block) throw new Error(`${file}: no \`operations! {\` block`);
  const body = block.split('\n}')[0];
  return [...body.matchAll(/=>\s*"([A-Z_]+)"/g)].map((m) => m[1].toLowerCase());
}

async function main() {
  const parser = new Parser({ __unstable: { resolver: { resolvers: [placeholderForMissingFiles] } } });
  const { document, diagnostics } = await fromFile(parser, documentPath).parse();

  let errors = 0;
  for (const d of diagnostics) {
    const severity = SEVERITY[d.severity] || String(d.severity);
    if (d.severity === DiagnosticSeverity.Error) errors += 1;
    console.log(`${severity}: ${d.code}: ${d.message} at ${where(d)}`);
  }
  for (const file of missing) {
    console.log(`warning: ${file} does not exist yet: checked as an open object`);
  }
  if (!document || errors > 0) {
    console.log(`${documentPath}: ${errors} error(s)`);
    process.exit(1);
  }

  if (vocabularyPath) {
    const expected = operationsInVocabulary(vocabularyPath);
    const channel = document.channels().get('dcos.op.{account}.{operation}');
    if (!channel) throw new Error('channel dcos.op.{account}.{operation} is missing');
    const parameter = channel.parameters().get('operation');
    const listed = (parameter && parameter.schema() && parameter.schema().enum()) || [];
    const absent = expected.filter((op) => !listed.includes(op));
    const extra = listed.filter((op) => !expected.includes(op));
    if (expected.length !== 34 || absent.length || extra.length) {
      console.error(
        `operation enum differs from ${vocabularyPath} (${expected.length} operations): ` +
          `missing [${absent.join(', ')}], unknown [${extra.join(', ')}]`,
      );
      process.exit(1);
    }
  }

  const channels = document.channels().all().map((c) => c.address());
  console.log(
    `${documentPath}: valid AsyncAPI ${document.version()} ` +
      `(${channels.length} channels, ${document.components().messages().length} messages)`,
  );
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
