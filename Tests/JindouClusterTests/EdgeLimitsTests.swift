import Foundation
import JindouModel
import JindouTestSupport
import JindouTransport
import JindouWire
import Testing

/// Limits against slow and greedy peers, with real processes: the HTTP idle timeout closes
/// a connection whose request head never completes, `--max-connections` holds extra
/// connections unserved until one closes, and a worker closes a connection that does not
/// send its HELLO in time.
@Suite("Edge limits", .serialized)
struct EdgeLimitsTests {
    let fixture = "qwen3-moe-tiny"

    func endpoint(_ url: String) throws -> Endpoint {
        try #require(Endpoint(String(url.dropFirst("http://".count))))
    }

    func healthRequest() -> [UInt8] { Array("GET /health HTTP/1.1\r\nHost: jindou\r\n\r\n".utf8) }

    @Test func aRequestHeadThatNeverCompletesIsClosed() throws {
        let (process, url) = try LocalClusterTests().startLocal(fixture: fixture, workers: 1, extraArguments: ["--idle-timeout", "1"])
        defer { process.terminate(); process.waitUntilExit() }
        let slow = try RawConnection(endpoint(url), timeoutSeconds: 20)
        #expect(slow.send(Array("GET /health HTTP/1.1\r\nHost: jin".utf8)))
        #expect(slow.receiveBytes() == [], "the server should close a connection whose headers never end")
        // A prompt client is served as usual.
        let prompt = try RawConnection(endpoint(url), timeoutSeconds: 20)
        #expect(prompt.send(healthRequest()))
        let answer = String(decoding: try #require(prompt.receiveBytes()), as: UTF8.self)
        #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
    }

    @Test func connectionsBeyondTheCapWaitUntilOneCloses() throws {
        let (process, url) = try LocalClusterTests().startLocal(fixture: fixture, workers: 1,
                                                                extraArguments: ["--max-connections", "1", "--idle-timeout", "0"])
        defer { process.terminate(); process.waitUntilExit() }
        var holder: RawConnection? = try RawConnection(endpoint(url))
        #expect(holder?.send(healthRequest()) == true)
        #expect(holder?.receiveBytes().map { String(decoding: $0, as: UTF8.self).hasPrefix("HTTP/1.1 200") } == true)
        let waiting = try RawConnection(endpoint(url), timeoutSeconds: 2)
        #expect(waiting.send(healthRequest()))
        #expect(waiting.receiveBytes() == nil, "a second connection was served while the cap of 1 was taken")
        holder = nil  // closes the first connection
        waiting.setReceiveTimeout(milliseconds: 20_000)
        let answer = String(decoding: try #require(waiting.receiveBytes()), as: UTF8.self)
        #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
    }

    @Test func aWorkerClosesConnectionsThatNeverSayHello() throws {
        let worker = try WorkerProcess(fixture: fixture, name: "strict", extraArguments: ["--handshake-timeout", "1"])
        defer { worker.stop() }
        let silent = try RawConnection(worker.endpoint, timeoutSeconds: 20)
        guard case .closed = silent.receive() else {
            Issue.record("a silent connection was kept open")
            return
        }
        // A coordinator that says HELLO in time keeps its connection past the timeout.
        let fingerprint = try ModelFingerprint.compute(Checkpoint(directory: Fixtures.path(fixture)))
        let prompt = try RawConnection(worker.endpoint, timeoutSeconds: 20)
        guard case .frame(let welcome) = try prompt.handshake(fingerprint: fingerprint), welcome.kind == .welcome else {
            Issue.record("no WELCOME")
            return
        }
        Thread.sleep(forTimeInterval: 1.5)
        try prompt.send(Heartbeat.frame(.ping, requestID: 2))
        guard case .frame(let pong) = prompt.receive() else {
            Issue.record("a handshaken connection was closed by the handshake timeout")
            return
        }
        #expect(pong.kind == .pong)
    }
}
