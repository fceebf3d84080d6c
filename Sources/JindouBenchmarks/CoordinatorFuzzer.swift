import Foundation
import JindouModel
import JindouTransport
import JindouWire
import NIOCore
import SwiftProtobuf

/// `jindouctl bench fuzz --against coordinator`: misbehaving workers at a live coordinator.
///
/// A coordinator listens only for HTTP; it *dials* workers, so the frames it parses are the
/// answers of workers. The fuzzer plays `fakeWorkers` workers: each listens on loopback,
/// joins through `POST /v1/admin/workers/join` (the coordinator's node-facing HTTP routes)
/// and heartbeats, so the coordinator pings it every tick and dials again whenever its link
/// failed. Every connection the coordinator opens is a case: the fuzzer reads the HELLO, then
/// answers either with a mutated WELCOME or with a valid (authenticated) WELCOME followed by
/// mutated answers to what the coordinator sends next (PONG to PING, SHARD_STATUS to
/// SHARD_UPDATE, or frames of any kind, random bytes, cuts). The placement is pinned to one
/// real worker holding every expert, and a client sends chat completions the whole time:
/// every one must succeed, every byte the coordinator sends must be a valid frame, and the
/// coordinator must still answer /health and a last completion at the end.
public struct CoordinatorFuzzer: Sendable {
    public struct Options: Sendable {
        public var coordinator: Endpoint
        public var secret: ClusterSecret
        public var fakeWorkers: Int
        public var seconds: Double
        public var seed: UInt64
        public var servedModelName: String
        public var coordinatorPID: Int32?

        public init(coordinator: Endpoint, secret: ClusterSecret, fakeWorkers: Int = 32, seconds: Double = 600, seed: UInt64 = 1,
                    servedModelName: String, coordinatorPID: Int32? = nil) {
            self.coordinator = coordinator
            self.secret = secret
            self.fakeWorkers = fakeWorkers
            self.seconds = seconds
            self.seed = seed
            self.servedModelName = servedModelName
            self.coordinatorPID = coordinatorPID
        }
    }

    public struct Report: Codable, Sendable {
        public var target: String
        public var date: String
        public var machine: String
        public var seed: UInt64
        public var seconds: Double = 0
        public var fakeWorkers = 0
        public var connections = 0
        public var fuzzedFrames = 0
        public var bytesSent = 0
        public var mutations: [String: Int] = [:]
        /// Frames the coordinator sent, by kind.
        public var coordinatorFrames: [String: Int] = [:]
        /// Bytes from the coordinator that were not a valid frame.
        public var undefinedFrames = 0
        public var undefinedExamples: [String] = []
        public var joins = 0
        public var failedJoins = 0
        public var chatRequests = 0
        public var failedChatRequests = 0
        public var chatFailureExamples: [String] = []
        public var healthAfter: Int?
        public var chatAfter: Int?
        public var coordinatorResidentBytesBefore = 0
        public var coordinatorResidentBytesAfter = 0
        public var coordinatorOpenFilesBefore = 0
        public var coordinatorOpenFilesAfter = 0
        public var coordinatorExited = false

        public var passed: Bool {
            undefinedFrames == 0 && failedChatRequests == 0 && failedJoins == 0 && healthAfter == 200 && chatAfter == 200 && !coordinatorExited
                && connections > 0
        }
    }

    let options: Options
    let frames: FrameFuzzer

    /// `frames` supplies the templates and mutations (and the model's fingerprint).
    public init(options: Options, frames: FrameFuzzer) {
        self.options = options
        self.frames = frames
    }

    public func run(progress: @escaping @Sendable (String) -> Void) throws -> Report {
        var report = Report(target: options.coordinator.description, date: ISO8601DateFormatter().string(from: Date()),
                            machine: ClusterBenchmark.machine, seed: options.seed)
        report.fakeWorkers = options.fakeWorkers
        if let pid = options.coordinatorPID {
            report.coordinatorResidentBytesBefore = FrameFuzzer.residentBytes(pid)
            report.coordinatorOpenFilesBefore = FrameFuzzer.openFiles(pid)
        }
        let listeners = try (0..<options.fakeWorkers).map { _ in try Listener() }
        defer { listeners.forEach { $0.close() } }
        let shared = SharedReport(report)
        let names = (0..<options.fakeWorkers).map { "fuzz-\($0)" }
        for (name, listener) in zip(names, listeners) {
            let status = join(name: name, address: listener.endpoint.description)
            shared.update { $0.joins += 1; if status != 200 { $0.failedJoins += 1 } }
        }
        let deadline = ContinuousClock.now + .seconds(options.seconds)
        let start = ContinuousClock.now
        let group = DispatchGroup()
        // Fake workers: serve every connection the coordinator opens, each a case.
        for (index, listener) in listeners.enumerated() {
            DispatchQueue.global().async(group: group) {
                var random = SplitMix64(seed: options.seed ^ UInt64(index + 1) &* 0xD1B5_4A32_D192_ED03)
                while ContinuousClock.now < deadline {
                    guard let connection = listener.accept(timeoutSeconds: 1) else { continue }
                    var local = Report(target: "", date: "", machine: "", seed: 0)
                    serve(connection, name: names[index], &random, into: &local)
                    shared.merge(local)
                }
            }
        }
        // Heartbeats (HTTP), so the fake workers stay members the coordinator keeps pinging.
        DispatchQueue.global().async(group: group) {
            while ContinuousClock.now < deadline {
                for (name, listener) in zip(names, listeners) {
                    _ = http("POST", "/v1/admin/workers/heartbeat", body: #"{"name":"\#(name)","address":"\#(listener.endpoint)"}"#)
                }
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
        // Real traffic: every completion must succeed while the fake workers misbehave.
        DispatchQueue.global().async(group: group) {
            var last = ContinuousClock.now
            while ContinuousClock.now < deadline {
                let (status, body) = chat()
                shared.update {
                    $0.chatRequests += 1
                    if status != 200 {
                        $0.failedChatRequests += 1
                        if $0.chatFailureExamples.count < 5 { $0.chatFailureExamples.append("\(status.map(String.init) ?? "no answer"): \(body.prefix(200))") }
                    }
                }
                if (ContinuousClock.now - last).seconds > 30 {
                    last = ContinuousClock.now
                    let snapshot = shared.snapshot
                    progress(String(format: "%.0f s: %d connections, %d fuzzed frames, %d/%d completions failed", (ContinuousClock.now - start).seconds,
                                    snapshot.connections, snapshot.fuzzedFrames, snapshot.failedChatRequests, snapshot.chatRequests))
                }
            }
        }
        group.wait()
        report = shared.snapshot
        report.seconds = (ContinuousClock.now - start).seconds
        report.healthAfter = http("GET", "/health").status
        report.chatAfter = chat().status
        if let pid = options.coordinatorPID {
            report.coordinatorExited = kill(pid, 0) != 0
            report.coordinatorResidentBytesAfter = FrameFuzzer.residentBytes(pid)
            report.coordinatorOpenFilesAfter = FrameFuzzer.openFiles(pid)
        }
        return report
    }

    /// One connection from the coordinator: HELLO in, then mutated or valid answers.
    func serve(_ connection: FuzzSocket, name: String, _ random: inout SplitMix64, into report: inout Report) {
        report.connections += 1
        guard let hello = connection.readFrame(into: &report) else { return }
        let helloMessage = try? HelloMessage(frame: hello)
        var welcome = WelcomeMessage(modelFingerprint: frames.wireCase.fingerprint, workerName: name, experts: [], expertBytes: 0, cores: 1,
                                     memoryBytes: 1 << 30)
        if let nonce = helloMessage?.nonce {
            welcome.authTag = options.secret.welcomeTag(nonce: nonce, fingerprint: welcome.modelFingerprint, workerName: name)
        }
        var welcomeHeader = welcome.frame(requestID: hello.requestID).header
        welcomeHeader.protocolVersion = WireProtocol.version
        if random.next() % 10 < 3 {
            report.fuzzedFrames += 1
            send(frames.mutate(("WELCOME", welcomeHeader, []), &random, counts: &report.mutations), on: connection, into: &report)
            connection.drain(into: &report, milliseconds: 500)
            return
        }
        send(frames.serialise(welcomeHeader, [], consistent: true), on: connection, into: &report)
        for _ in 0..<(1 + random.next() % 4) {
            guard let request = connection.readFrame(into: &report) else { return }
            let answer: [UInt8]
            switch random.next() % 4 {
            case 0:
                // Any template, mutated.
                answer = frames.mutateAny(&random, counts: &report.mutations)
            case 1:
                answer = frames.randomBytes(&random, count: Int(random.next() % 300))
                report.mutations["random bytes", default: 0] += 1
            default:
                // The expected answer, mutated.
                var header = FrameHeader()
                header.requestID = request.requestID
                header.protocolVersion = WireProtocol.version
                var payload: [UInt8] = []
                switch request.kind {
                case .ping:
                    header.kind = .pong
                    payload = Array(request.payload.readableBytesView)
                case .shardUpdate:
                    header.kind = .shardStatus
                    if case .shard(let spec)? = request.header.body { header.shard = spec }
                case .dispatch:
                    header.kind = .combine
                    header.layer = request.header.layer
                    header.tokenCount = request.header.tokenCount
                    header.hiddenSize = request.header.hiddenSize
                    header.dtype = request.header.dtype
                    payload = Array(request.payload.readableBytesView)
                default:
                    header.kind = .error
                    var body = Jindou_V1_ErrorReply()
                    body.code = .malformedFrame
                    header.error = body
                }
                answer = frames.mutate(("answer", header, payload), &random, counts: &report.mutations)
            }
            report.fuzzedFrames += 1
            send(answer, on: connection, into: &report)
        }
        connection.drain(into: &report, milliseconds: 500)
    }

    private func send(_ bytes: [UInt8], on connection: FuzzSocket, into report: inout Report) {
        report.bytesSent += bytes.count
        _ = connection.send(bytes)
    }

    private func join(name: String, address: String) -> Int? {
        let body = #"{"name":"\#(name)","address":"\#(address)","cores":1,"memory_bytes":1073741824,"fingerprint":"\#(frames.wireCase.fingerprint)"}"#
        return http("POST", "/v1/admin/workers/join", body: body).status
    }

    private func chat() -> (status: Int?, body: String) {
        http("POST", "/v1/chat/completions",
             body: #"{"model":"\#(options.servedModelName)","max_tokens":4,"temperature":0,"messages":[{"role":"user","content":"hi"}]}"#)
    }

    /// A one-shot HTTP/1.1 request on a fresh connection (Connection: close).
    private func http(_ method: String, _ path: String, body: String = "") -> (status: Int?, body: String) {
        guard let connection = FuzzSocket(connectingTo: options.coordinator, timeoutSeconds: 60) else { return (nil, "cannot connect") }
        let request = "\(method) \(path) HTTP/1.1\r\nHost: \(options.coordinator)\r\nAuthorization: Bearer \(options.secret.token)\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        guard connection.send(Array(request.utf8)) else { return (nil, "send failed") }
        let response = String(decoding: connection.readAll(), as: UTF8.self)
        let status = response.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) }
        let text = response.range(of: "\r\n\r\n").map { String(response[$0.upperBound...]) } ?? response
        return (status, text)
    }
}

extension CoordinatorFuzzer.Report {
    public var markdown: String {
        func table(_ counts: [String: Int]) -> [String] { counts.sorted { $0.value > $1.value }.map { "| \($0.key) | \($0.value) |" } }
        var lines = [
            "## Misbehaving workers at a coordinator (`jindouctl bench fuzz --against coordinator`)",
            "",
            "Target: a `jindoud coordinator` on \(target) (cluster secret set, placement pinned to one real worker), \(fakeWorkers) fake "
                + "workers joined through the node-facing HTTP routes. Machine: \(machine). Run: \(date). Seed \(seed).",
            "",
            "| seconds | connections the coordinator opened | fuzzed frames | chat completions | failed | undefined frames from the coordinator | coordinator exited |",
            "|---:|---:|---:|---:|---:|---:|---|",
            "| \(String(format: "%.0f", seconds)) | \(connections) | \(fuzzedFrames) | \(chatRequests) | \(failedChatRequests) | \(undefinedFrames) | \(coordinatorExited ? "yes" : "no") |",
            "",
            "After the run: /health \(healthAfter.map(String.init) ?? "no answer"), a chat completion \(chatAfter.map(String.init) ?? "no answer"). "
                + String(format: "Coordinator RSS %.1f MB before, %.1f MB after; ", Double(coordinatorResidentBytesBefore) / 1e6, Double(coordinatorResidentBytesAfter) / 1e6)
                + "open files \(coordinatorOpenFilesBefore) before, \(coordinatorOpenFilesAfter) after.",
            "",
            "| frames the coordinator sent | count |", "|---|---:|",
        ]
        lines += table(coordinatorFrames)
        lines += ["", "| mutation | frames |", "|---|---:|"]
        lines += table(mutations)
        if !undefinedExamples.isEmpty { lines += ["", "Undefined frames: " + undefinedExamples.joined(separator: "; ")] }
        if !chatFailureExamples.isEmpty { lines += ["", "Failed completions: " + chatFailureExamples.joined(separator: "; ")] }
        return lines.joined(separator: "\n")
    }
}

/// The report under a lock, merged from the fake workers' threads.
private final class SharedReport: @unchecked Sendable {
    // @unchecked: every access holds the lock.
    private var report: CoordinatorFuzzer.Report
    private let lock = NSLock()

    init(_ report: CoordinatorFuzzer.Report) { self.report = report }
    var snapshot: CoordinatorFuzzer.Report { lock.withLock { report } }
    func update(_ change: (inout CoordinatorFuzzer.Report) -> Void) { lock.withLock { change(&report) } }

    func merge(_ other: CoordinatorFuzzer.Report) {
        update { r in
            r.connections += other.connections
            r.fuzzedFrames += other.fuzzedFrames
            r.bytesSent += other.bytesSent
            r.mutations.merge(other.mutations, uniquingKeysWith: +)
            r.coordinatorFrames.merge(other.coordinatorFrames, uniquingKeysWith: +)
            r.undefinedFrames += other.undefinedFrames
            r.undefinedExamples += other.undefinedExamples.prefix(max(0, 10 - r.undefinedExamples.count))
        }
    }
}
