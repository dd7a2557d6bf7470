// A PGlite (Postgres in WASM) with TimescaleDB *TSL* behind a Postgres wire-protocol socket, so
// the project's timescale-license SQL (continuous aggregates, policies, compression) can be
// applied and exercised where no real TSL server is reachable. One connection at a time; no
// COPY/executemany (see ../shared/README.md). Usage: node pglite_tsl_server.mjs PORT
import { PGlite } from '@electric-sql/pglite'
import { timescaledb } from '@electric-sql/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

const port = parseInt(process.argv[2] || '55432', 10)
const db = await PGlite.create({ extensions: { timescaledb } })
await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')
const lic = await db.query("SELECT current_setting('timescaledb.license', true) AS l, " +
  "(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS v")
const server = new PGLiteSocketServer({ db, port, host: '127.0.0.1' })
await server.start()
console.log(`READY port=${port} license=${lic.rows[0].l} timescaledb=${lic.rows[0].v}`)
const stop = async () => { await server.stop(); await db.close(); process.exit(0) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
