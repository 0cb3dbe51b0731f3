// The publish floor for node:http: the least a Node HTTP server does per publish. It reads the body
// and answers 202 with a channel-info body of Parkline's size (text/plain); nothing is stored or
// delivered. What Parkline's publisher adds on top of Node's own HTTP machinery is the difference.
//
//   node benchmarks/suite/http-floor.ts PORT [HOST]   prints "http floor listening on PORT"
import http from 'node:http'

const BODY = Buffer.from('queued messages: 1\r\nlast requested: -1 sec. ago\r\nactive subscribers: 0\r\nlast message id: 1796000000:0', 'latin1')
const HEADERS = { 'content-type': 'text/plain', 'content-length': String(BODY.length) }

const server = http.createServer((req, res) => {
  req.on('data', () => {})
  req.on('end', () => {
    res.writeHead(req.method === 'POST' || req.method === 'PUT' ? 202 : 200, HEADERS)
    res.end(BODY)
  })
})
server.listen(Number(process.argv[2] ?? 0), process.argv[3] ?? '127.0.0.1', () => {
  process.stdout.write(`http floor listening on ${(server.address() as { port: number }).port}\n`)
})
