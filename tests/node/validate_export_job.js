// Validates jobs in the ExportJob JSON form against proto/exportjobs/v1/export_job.schema.json.
//
//   node tests/node/validate_export_job.js [--list KEY] [FILE]
//
// Reads FILE (or stdin): one JSON document, or JSON Lines (one document per line). Each document
// is a job, or with --list KEY an object whose array KEY holds jobs (e.g. --list export_jobs for
// the HTTP list view). Each job must validate against the schema with its formats checked
// (uri, date-time), and must have no properties beyond the schema's: the form is exactly the
// schema's. Prints "ok N jobs" and exits 0, or prints every problem and exits 1.
'use strict';

const fs = require('fs');
const path = require('path');
const Ajv2020 = require('ajv/dist/2020');
const addFormats = require('ajv-formats');

const schemaPath = path.join(__dirname, '..', '..', 'proto', 'exportjobs', 'v1',
                             'export_job.schema.json');

function main(argv) {
  let listKey = null;
  let file = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--list') {
      listKey = argv[++i];
      if (!listKey) return usage('--list needs a KEY');
    } else if (file === null) {
      file = argv[i];
    } else {
      return usage(`unexpected argument ${argv[i]}`);
    }
  }
  const text = fs.readFileSync(file === null ? 0 : file, 'utf8');
  const schema = JSON.parse(fs.readFileSync(schemaPath, 'utf8'));
  // The schema's $id ("#/components/schemas/ExportJob") is its place in an OpenAPI document, and
  // draft 2020-12 allows no fragment in an $id; it names the schema and constrains nothing.
  delete schema.$id;
  const ajv = new Ajv2020({allErrors: true, strict: true});
  addFormats(ajv);
  const validate = ajv.compile(schema);
  const allowed = new Set(Object.keys(schema.properties));

  let documents;
  try {
    documents = [JSON.parse(text)];
  } catch (e) {
    documents = text.split('\n').filter((line) => line.trim() !== '').map((line, n) => {
      try {
        return JSON.parse(line);
      } catch (err) {
        throw new Error(`line ${n + 1} is not JSON: ${err.message}`);
      }
    });
  }
  if (documents.length === 0) return fail(['no JSON document in the input']);

  const problems = [];
  let jobs = [];
  documents.forEach((doc, n) => {
    if (listKey === null) {
      jobs.push({where: `document ${n + 1}`, job: doc});
    } else if (!doc || !Array.isArray(doc[listKey])) {
      problems.push(`document ${n + 1}: no array "${listKey}"`);
    } else {
      doc[listKey].forEach((job, i) => jobs.push({where: `${listKey}[${i}]`, job}));
    }
  });
  for (const {where, job} of jobs) {
    if (job === null || typeof job !== 'object' || Array.isArray(job)) {
      problems.push(`${where}: not a JSON object`);
      continue;
    }
    if (!validate(job)) {
      for (const e of validate.errors) {
        problems.push(`${where}: ${e.instancePath || '(root)'} ${e.message}`);
      }
    }
    for (const key of Object.keys(job)) {
      if (!allowed.has(key)) problems.push(`${where}: property "${key}" is not in the schema`);
    }
  }
  if (problems.length > 0) return fail(problems);
  console.log(`ok ${jobs.length} jobs`);
  return 0;
}

function usage(message) {
  console.error(`validate_export_job: ${message}`);
  return 2;
}

function fail(problems) {
  for (const p of problems) console.error(`validate_export_job: ${p}`);
  return 1;
}

process.exitCode = main(process.argv.slice(2));
