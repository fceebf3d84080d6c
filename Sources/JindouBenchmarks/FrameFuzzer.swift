import Foundation
import JindouModel
import JindouPlacement
import JindouTransport
import JindouWire
import NIOCore
import SwiftProtobuf
import Synchronization

/// `jindouctl bench fuzz`: mutated and random frames against a live worker's node port.
///
/// One TCP connection per case. A case is either random bytes, a mutated HELLO, or a
/// valid (authenticated) HELLO followed by 1…N frames, each a mutation of a valid frame of
/// some kind (every `MessageKind`, plus unknown kinds): a header field set to an edge
/// value, a body field broken (offsets, experts, weights, shard ranges, names), bytes
/// flipped, inserted or deleted, the frame cut short, its length prefix rewritten. The
/// bytes go out in randomly sized writes; then the fuzzer half-closes and reads until the
/// worker closes. Judged per case:
///   - every reply must decode as a frame of a kind a worker sends, and every ERROR must
///     carry a defined error code;
///   - the worker must close within `replyTimeout` of the half-close (else a *hang*);
///   - every `healthEvery` cases, a fresh connection must complete HELLO → WELCOME and
///     PING → PONG (else the worker is *down*, counted as a crash).
/// At the end the worker's shard is restored with a valid SHARD_UPDATE and every dispatch
/// of a `WireCase` must come back equal to Jindou's own expert code, so the worker not
/// only survived but still computes correctly. Case `i` is drawn from seed `seed ^ i`:
/// a failing case can be replayed alone (`--first-case i --cases 1`).
public struct FrameFuzzer: Sendable {
    public struct Options: Sendable {
        public var target: Endpoint
        public var cases: Int
        public var firstCase: Int
        public var seed: UInt64
        /// Concurrent connections.
        public var lanes: Int
        public var secret: ClusterSecret?
        public var replyTimeoutSeconds: Int
        public var healthEvery: Int
        /// The worker's process, for RSS and open files before and after.
        public var workerPID: Int32?
        public var maximumFramesPerCase: Int

        public init(target: Endpoint, cases: Int, firstCase: Int = 0, seed: UInt64 = 1, lanes: Int = 2, secret: ClusterSecret?,
                    replyTimeoutSeconds: Int = 10, healthEvery: Int = 5000, workerPID: Int32? = nil, maximumFramesPerCase: Int = 8) {
            self.target = target
            self.cases = cases
            self.firstCase = firstCase
            self.seed = seed
            self.lanes = lanes
            self.secret = secret
            self.replyTimeoutSeconds = replyTimeoutSeconds
            self.healthEvery = healthEvery
            self.workerPID = workerPID
            self.maximumFramesPerCase = maximumFramesPerCase
        }
    }

    public struct Report: Codable, Sendable {
        public var target: String
        public var model: String
        public var date: String
        public var machine: String
        public var seed: UInt64
        public var cases = 0
        /// Frames (valid HELLOs, mutated frames and random chunks) sent.
        public var framesSent = 0
        /// Of those, the mutated and random ones (the rest are valid HELLOs opening a case).
        public var fuzzedFrames = 0
        public var bytesSent = 0
        /// Frames by the kind of the template they were mutated from ("random" for garbage).
        public var framesByTemplate: [String: Int] = [:]
        public var mutations: [String: Int] = [:]
        public var repliesByKind: [String: Int] = [:]
        public var errorCodes: [String: Int] = [:]
        /// Replies that were not a frame a worker may send, or an ERROR with an undefined code.
        public var undefinedReplies = 0
        public var undefinedReplyExamples: [String] = []
        /// Cases where the worker did not close within the timeout after the half-close.
        public var hangs = 0
        public var hangExamples: [Int] = []
        public var connectFailures = 0
        public var healthChecks = 0
        public var failedHealthChecks = 0
        public var finalDispatches = 0
        public var finalDispatchMaxDifference: Double = 0
        public var finalDispatchesExact = false
        public var seconds: Double = 0
        public var framesPerSecond: Double = 0
        public var workerResidentBytesBefore = 0
        public var workerResidentBytesAfter = 0
        public var workerOpenFilesBefore = 0
        public var workerOpenFilesAfter = 0
        public var workerExitedDuringRun = false

        public var passed: Bool {
            undefinedReplies == 0 && hangs == 0 && connectFailures == 0 && failedHealthChecks == 0 && finalDispatchesExact
                && !workerExitedDuringRun
        }

        mutating func merge(_ other: Report) {
            cases += other.cases
            framesSent += other.framesSent
            fuzzedFrames += other.fuzzedFrames
            bytesSent += other.bytesSent
            framesByTemplate.merge(other.framesByTemplate, uniquingKeysWith: +)
            mutations.merge(other.mutations, uniquingKeysWith: +)
            repliesByKind.merge(other.repliesByKind, uniquingKeysWith: +)
            errorCodes.merge(other.errorCodes, uniquingKeysWith: +)
            undefinedReplies += other.undefinedReplies
            undefinedReplyExamples += other.undefinedReplyExamples.prefix(max(0, 10 - undefinedReplyExamples.count))
            hangs += other.hangs
            hangExamples += other.hangExamples.prefix(max(0, 10 - hangExamples.count))
            connectFailures += other.connectFailures
            healthChecks += other.healthChecks
            failedHealthChecks += other.failedHealthChecks
        }
    }

    let options: Options
    let wireCase: WireCase
    let modelName: String
    let expertKeys: [ExpertKey]
    /// Valid frames of every kind, serialised as the fuzzer's mutation templates.
    private let templates: [(name: String, header: FrameHeader, payload: [UInt8])]

    public init(options: Options, model: String) throws {
        self.options = options
        modelName = model
        let source = try openWeightSource(model)
        let description = try source.modelDescription()
        wireCase = try WireCase(source: source, tokens: 3, layerLimit: 4, seed: options.seed)
        expertKeys = description.sparseLayers.flatMap { layer in (0..<description.expertCount).map { ExpertKey(layer: layer, expert: $0) } }
        templates = Self.templates(wireCase: wireCase, keys: expertKeys, secret: options.secret)
    }

    // MARK: - Running

    public func run(progress: @Sendable (String) -> Void) throws -> Report {
        var report = Report(target: options.target.description, model: modelName, date: ISO8601DateFormatter().string(from: Date()),
                            machine: ClusterBenchmark.machine, seed: options.seed)
        if let pid = options.workerPID {
            report.workerResidentBytesBefore = Self.residentBytes(pid)
            report.workerOpenFilesBefore = Self.openFiles(pid)
        }
        let start = ContinuousClock.now
        let lanes = max(1, options.lanes)
        let merged = Mutex(report)
        let done = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: lanes) { lane in
            var local = Report(target: "", model: "", date: "", machine: "", seed: options.seed)
            var index = options.firstCase + lane
            while index < options.firstCase + options.cases {
                runCase(index, into: &local)
                let finished = done.wrappingAdd(1, ordering: .relaxed).newValue
                if finished % options.healthEvery == 0 {
                    local.healthChecks += 1
                    if !healthCheck() { local.failedHealthChecks += 1 }
                    let elapsed = (ContinuousClock.now - start).seconds
                    progress(String(format: "%d/%d cases, %.0f cases/s", finished, options.cases, Double(finished) / elapsed))
                }
                index += lanes
            }
            merged.withLock { $0.merge(local) }
        }
        report = merged.withLock { $0 }
        report.healthChecks += 1
        if !healthCheck() { report.failedHealthChecks += 1 }
        report.seconds = (ContinuousClock.now - start).seconds
        report.framesPerSecond = Double(report.framesSent) / report.seconds
        do {
            (report.finalDispatches, report.finalDispatchMaxDifference) = try finalDispatches()
            report.finalDispatchesExact = report.finalDispatchMaxDifference == 0 && report.finalDispatches == wireCase.dispatches.count
        } catch {
            progress("final dispatches failed: \(error)")
        }
        if let pid = options.workerPID {
            report.workerExitedDuringRun = kill(pid, 0) != 0
            report.workerResidentBytesAfter = Self.residentBytes(pid)
            report.workerOpenFilesAfter = Self.openFiles(pid)
        }
        return report
    }

    /// One case: connect, send, half-close, read every reply until the worker closes.
    func runCase(_ index: Int, into report: inout Report) {
        var random = SplitMix64(seed: options.seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15))
        let (bytes, frames, fuzzed) = caseBytes(&random, report: &report)
        report.cases += 1
        report.framesSent += frames
        report.fuzzedFrames += fuzzed
        report.bytesSent += bytes.count
        guard let connection = FuzzSocket(connectingTo: options.target, timeoutSeconds: options.replyTimeoutSeconds) else {
            report.connectFailures += 1
            return
        }
        // Randomly sized writes: the decoder must reassemble frames from any split.
        var offset = 0
        while offset < bytes.count {
            let chunk = Int.random(in: 1...max(1, bytes.count), using: &random)
            let end = random.next() % 2 == 0 ? bytes.count : min(bytes.count, offset + chunk)
            if !connection.send(bytes[offset..<end]) { break }
            offset = end
        }
        connection.halfClose()
        let (received, ended) = connection.receiveUntilClosed()
        if !ended {
            report.hangs += 1
            if report.hangExamples.count < 10 { report.hangExamples.append(index) }
        }
        judge(received, caseIndex: index, into: &report)
    }

    /// Checks the worker's replies: frames of kinds a worker sends, ERRORs with defined codes.
    func judge(_ bytes: [UInt8], caseIndex: Int, into report: inout Report) {
        var buffer = ByteBuffer(bytes: bytes)
        var decoder = FrameDecoder()
        func undefined(_ what: String) {
            report.undefinedReplies += 1
            if report.undefinedReplyExamples.count < 10 { report.undefinedReplyExamples.append("case \(caseIndex): \(what)") }
        }
        while buffer.readableBytes > 0 {
            let frame: Frame?
            do {
                frame = try decoder.decode(&buffer)
            } catch {
                undefined("undecodable reply: \(error.error)")
                return
            }
            guard let frame else {
                // A reply cut short is legitimate only if the worker closed mid-write, which it does not do.
                undefined("reply cut short (\(buffer.readableBytes) bytes left)")
                return
            }
            let kind = frame.kind
            guard Self.workerReplyKinds.contains(kind) else {
                undefined("reply of kind \(kind)")
                continue
            }
            report.repliesByKind["\(kind)", default: 0] += 1
            if kind == .error {
                let code = ErrorMessage(frame: frame).code
                if case .UNRECOGNIZED = code { undefined("ERROR with undefined code \(code.rawValue)") } else if code == .unspecified {
                    undefined("ERROR without a code")
                } else {
                    report.errorCodes["\(code)", default: 0] += 1
                }
            }
        }
    }

    static let workerReplyKinds: Set<MessageKind> = [.welcome, .combine, .error, .pong, .shardStatus, .shmAttached, .rdmaAccept]

    // MARK: - Health and the final check

    /// HELLO → WELCOME and PING → PONG on a fresh connection.
    func healthCheck() -> Bool {
        for _ in 0..<3 {
            if let connection = FuzzSocket(connectingTo: options.target, timeoutSeconds: options.replyTimeoutSeconds),
               let session = try? handshake(connection) {
                var ping = Heartbeat.frame(.ping, requestID: 7)
                ping.payload = ByteBuffer(bytes: [1, 2, 3])
                if let reply = try? session.exchange(ping), reply.kind == .pong, reply.payload.readableBytes == 3 { return true }
            }
            usleep(200_000)
        }
        return false
    }

    private func handshake(_ connection: FuzzSocket) throws -> FuzzSocket {
        let hello = HelloMessage(modelFingerprint: wireCase.fingerprint, coordinatorName: "jindou-fuzz", secret: options.secret)
        let reply = try connection.exchange(hello.frame(requestID: 1))
        guard reply.kind == .welcome else { throw BenchmarkError("handshake answered by \(reply.kind)") }
        return connection
    }

    /// Restores the full shard, then checks every dispatch of the wire case bit for bit.
    func finalDispatches() throws -> (Int, Double) {
        guard let connection = FuzzSocket(connectingTo: options.target, timeoutSeconds: 120) else { throw BenchmarkError("cannot connect") }
        let session = try handshake(connection)
        let status = try session.exchange(ShardMessage.frame(.shardUpdate, spec: ExpertSetCoding.spec(expertKeys, version: 1 << 40),
                                                             requestID: 2))
        guard status.kind == .shardStatus else { throw BenchmarkError("SHARD_UPDATE answered by \(status.kind): \(ErrorMessage(frame: status).message)") }
        var worst = 0.0
        for (i, dispatch) in wireCase.dispatches.enumerated() {
            let message = DispatchMessage(requestID: UInt64(10 + i), layer: dispatch.layer, placementVersion: 1 << 40, hiddenSize: wireCase.hiddenSize,
                                          dtype: .f32, routing: dispatch.routing, hidden: dispatch.hidden)
            let reply = try session.exchange(message.frame())
            guard reply.kind == .combine else { throw BenchmarkError("DISPATCH answered by \(reply.kind): \(ErrorMessage(frame: reply).message)") }
            let combine = try CombineMessage(frame: reply)
            guard combine.output.count == dispatch.expected.count else { return (i, .infinity) }
            for (a, b) in zip(combine.output, dispatch.expected) {
                let difference = abs(Double(a) - Double(b))
                worst = difference.isNaN ? .infinity : max(worst, difference)
            }
        }
        return (wireCase.dispatches.count, worst)
    }

    // MARK: - Cases

    /// The bytes of one case, how many frames they hold and how many of those are fuzzed.
    func caseBytes(_ random: inout SplitMix64, report: inout Report) -> ([UInt8], Int, Int) {
        let choice = random.next() % 100
        if choice < 8 {
            report.framesByTemplate["random", default: 0] += 1
            report.mutations["random bytes", default: 0] += 1
            return (randomBytes(&random, count: Int(random.next() % 600)), 1, 1)
        }
        if choice < 25 {
            // The handshake itself, mutated.
            let hello = templates[0]
            report.framesByTemplate["HELLO (first)", default: 0] += 1
            return (mutate(hello, &random, counts: &report.mutations), 1, 1)
        }
        let hello = HelloMessage(modelFingerprint: wireCase.fingerprint, coordinatorName: "jindou-fuzz", secret: options.secret)
        var bytes = Array((try? FrameEncoder.encode(hello.frame(requestID: 1)))?.readableBytesView ?? [])
        let count = 1 + Int(random.next() % UInt64(max(1, options.maximumFramesPerCase)))
        for _ in 0..<count {
            let template = templates[Int(random.next() % UInt64(templates.count))]
            report.framesByTemplate[template.name, default: 0] += 1
            bytes += mutate(template, &random, counts: &report.mutations)
        }
        return (bytes, count + 1, count)
    }

    /// One mutation of a template frame, serialised (length prefix, header, payload).
    func mutate(_ template: (name: String, header: FrameHeader, payload: [UInt8]), _ random: inout SplitMix64,
                counts: inout [String: Int]) -> [UInt8] {
        var header = template.header
        var payload = template.payload
        var consistent = true  // recompute payload_length and crc after the mutation
        let kind = random.next() % 10
        var name: String
        switch kind {
        case 0, 1:
            name = mutateHeaderField(&header, &random)
            consistent = random.next() % 4 != 0
        case 2, 3:
            name = mutateBody(&header, &random)
        case 4:
            name = "payload resized"
            let size = [0, 1, 3, 4, 7, payload.count - 1, payload.count + 1, Int(random.next() % 70000)].randomElement(using: &random)!
            payload = randomBytes(&random, count: max(0, size))
        case 5:
            name = "payload values extreme"
            let values: [UInt32] = [0x7FC0_0000, 0x7F80_0000, 0xFF80_0000, 0x7F7F_FFFF, 0x0000_0001, 0x8000_0000]
            var i = 0
            while i + 4 <= payload.count {
                if random.next() % 3 == 0 {
                    let bits = values.randomElement(using: &random)!.littleEndian
                    withUnsafeBytes(of: bits) { for k in 0..<4 { payload[i + k] = $0[k] } }
                }
                i += 4
            }
        default:
            name = "none"
        }
        var bytes = serialise(header, payload, consistent: consistent)
        if kind >= 6 {
            name = mutateBytes(&bytes, &random)
        }
        counts[name, default: 0] += 1
        return bytes
    }

    /// A mutation of a template of any kind.
    func mutateAny(_ random: inout SplitMix64, counts: inout [String: Int]) -> [UInt8] {
        mutate(templates[Int(random.next() % UInt64(templates.count))], &random, counts: &counts)
    }

    func serialise(_ header: FrameHeader, _ payload: [UInt8], consistent: Bool) -> [UInt8] {
        var header = header
        if consistent {
            header.payloadLength = UInt64(payload.count)
            header.payloadCrc32C = payload.withUnsafeBytes { crc32c($0) }
        }
        let headerBytes: [UInt8] = (try? header.serializedBytes()) ?? []
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4 + headerBytes.count + payload.count)
        withUnsafeBytes(of: UInt32(headerBytes.count).littleEndian) { bytes += $0 }
        return bytes + headerBytes + payload
    }

    func mutateHeaderField(_ header: inout FrameHeader, _ random: inout SplitMix64) -> String {
        let edges32: [UInt32] = [0, 1, 2, 7, 255, 256, 65535, 1 << 20, UInt32.max - 1, UInt32.max]
        let edges64: [UInt64] = [0, 1, 2, 1 << 31, 1 << 32, 1 << 40, UInt64(WireProtocol.defaultMaximumPayloadLength) + 1, UInt64.max]
        func any32() -> UInt32 { random.next() % 2 == 0 ? edges32.randomElement(using: &random)! : UInt32(truncatingIfNeeded: random.next()) }
        func any64() -> UInt64 { random.next() % 2 == 0 ? edges64.randomElement(using: &random)! : random.next() }
        switch random.next() % 10 {
        case 0: header.protocolVersion = any32(); return "header protocol_version"
        case 1: header.kind = MessageKind(rawValue: Int(random.next() % 20)) ?? .unspecified; return "header kind"
        case 2: header.requestID = any64(); return "header request_id"
        case 3: header.layer = any32(); return "header layer"
        case 4: header.placementVersion = any64(); return "header placement_version"
        case 5: header.tokenCount = any32(); return "header token_count"
        case 6: header.hiddenSize = any32(); return "header hidden_size"
        case 7: header.dtype = TensorDType(rawValue: Int(random.next() % 8)) ?? .unspecified; return "header dtype"
        case 8: header.payloadLength = any64(); return "header payload_length"
        default: header.payloadCrc32C = any32(); return "header payload_crc32c"
        }
    }

    func mutateBody(_ header: inout FrameHeader, _ random: inout SplitMix64) -> String {
        func junk() -> String {
            ["", "0", "-1", "5-1", "0-4294967295", "a-b", ",,,", "0-3,2-9", String(repeating: "9", count: 40), "1-", "\u{0}",
             String(repeating: "0-1,", count: 2000)].randomElement(using: &random)!
        }
        switch header.body {
        case .routing(var routing)?:
            switch random.next() % 6 {
            case 0: routing.offsets = routing.offsets.map { _ in UInt32(truncatingIfNeeded: random.next() % 64) }
            case 1: if !routing.offsets.isEmpty { routing.offsets.removeLast() }
            case 2: routing.experts = routing.experts.map { _ in [0, 1, 127, 128, 1 << 20, UInt32.max].randomElement(using: &random)! }
            case 3: routing.weights = routing.weights.map { _ in [Float.nan, .infinity, -.infinity, 0, -1, .greatestFiniteMagnitude].randomElement(using: &random)! }
            case 4: routing.experts.append(0)
            default: routing = Jindou_V1_DispatchRouting()
            }
            header.routing = routing
            return "body routing"
        case .hello(var hello)?:
            switch random.next() % 5 {
            case 0: hello.modelFingerprint = junk()
            case 1: hello.protocolVersion = UInt32(truncatingIfNeeded: random.next() % 4)
            case 2: hello.authTag = Data(randomBytes(&random, count: Int(random.next() % 40)))
            case 3: hello.nonce = Data()
            default: hello.coordinatorName = String(repeating: "x", count: Int(random.next() % 100_000))
            }
            header.hello = hello
            return "body hello"
        case .shard(var shard)?:
            if shard.layers.isEmpty || random.next() % 3 == 0 {
                var entry = Jindou_V1_LayerExperts()
                entry.layer = [0, 1, 2, 1000, UInt32.max].randomElement(using: &random)!
                entry.experts = junk()
                shard.layers.append(entry)
            } else {
                let i = Int(random.next() % UInt64(shard.layers.count))
                shard.layers[i].experts = junk()
            }
            shard.version = random.next()
            header.shard = shard
            return "body shard"
        case .shmAttach(var attach)?:
            attach.name = ["", "/", "/../etc/passwd", "noslash", "/a/b", "/jindou-does-not-exist", String(repeating: "/x", count: 300)]
                .randomElement(using: &random)!
            attach.ringBytes = [0, 1, 4096, 1 << 40, UInt64.max].randomElement(using: &random)!
            header.shmAttach = attach
            return "body shm_attach"
        case .rdma(var rdma)?:
            rdma.gid = Data(randomBytes(&random, count: Int(random.next() % 20)))
            rdma.mtu = UInt32(truncatingIfNeeded: random.next() % 10)
            rdma.slotBytes = [0, 1, 1 << 40].randomElement(using: &random)!
            header.rdma = rdma
            return "body rdma"
        case .error(var error)?:
            error.code = ErrorCode(rawValue: Int(random.next() % 20)) ?? .unspecified
            error.message = junk()
            header.error = error
            return "body error"
        default:
            // Give a body-less frame somebody else's body.
            switch random.next() % 4 {
            case 0: header.routing = Jindou_V1_DispatchRouting()
            case 1: header.hello = Jindou_V1_Hello()
            case 2: header.shard = Jindou_V1_ShardSpec()
            default: header.welcome = Jindou_V1_Welcome()
            }
            return "body swapped"
        }
    }

    func mutateBytes(_ bytes: inout [UInt8], _ random: inout SplitMix64) -> String {
        guard !bytes.isEmpty else { return "none" }
        switch random.next() % 6 {
        case 0:
            for _ in 0..<(1 + random.next() % 8) { bytes[Int(random.next() % UInt64(bytes.count))] ^= UInt8(1 << (random.next() % 8)) }
            return "bit flips"
        case 1:
            bytes = Array(bytes.prefix(Int(random.next() % UInt64(bytes.count))))
            return "cut short"
        case 2:
            let length: UInt32 = [0, 1, 3, UInt32(WireProtocol.maximumHeaderLength), UInt32(WireProtocol.maximumHeaderLength + 1), UInt32.max,
                                  UInt32(truncatingIfNeeded: random.next())].randomElement(using: &random)!
            withUnsafeBytes(of: length.littleEndian) { for k in 0..<min(4, bytes.count) { bytes[k] = $0[k] } }
            return "length prefix"
        case 3:
            let at = Int(random.next() % UInt64(bytes.count))
            bytes.insert(contentsOf: randomBytes(&random, count: 1 + Int(random.next() % 16)), at: at)
            return "bytes inserted"
        case 4:
            let at = Int(random.next() % UInt64(bytes.count))
            bytes.removeSubrange(at..<min(bytes.count, at + 1 + Int(random.next() % 16)))
            return "bytes deleted"
        default:
            let at = 4 + Int(random.next() % UInt64(max(1, bytes.count - 4)))
            if at < bytes.count { bytes[at] = [0x00, 0xFF, 0x80, 0x7F].randomElement(using: &random)! }
            return "byte set"
        }
    }

    func randomBytes(_ random: inout SplitMix64, count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }

    /// One valid frame of every kind (HELLO first: the handshake's template).
    static func templates(wireCase: WireCase, keys: [ExpertKey], secret: ClusterSecret?) -> [(name: String, header: FrameHeader, payload: [UInt8])] {
        var frames: [(String, Frame)] = []
        frames.append(("HELLO", HelloMessage(modelFingerprint: wireCase.fingerprint, coordinatorName: "jindou-fuzz", secret: secret).frame(requestID: 1)))
        frames.append(("WELCOME", WelcomeMessage(modelFingerprint: wireCase.fingerprint, workerName: "w", experts: [(0, 0)], expertBytes: 1).frame(requestID: 1)))
        for (i, dispatch) in wireCase.dispatches.enumerated() {
            for dtype in WireDType.allCases {
                frames.append(("DISPATCH", DispatchMessage(requestID: UInt64(100 + i), layer: dispatch.layer, placementVersion: 1, hiddenSize: wireCase.hiddenSize,
                                                           dtype: dtype, routing: dispatch.routing, hidden: dispatch.hidden).frame()))
            }
            if i == 0 {
                var combine = FrameHeader()
                combine.kind = .combine
                combine.layer = UInt32(dispatch.layer)
                combine.tokenCount = UInt32(dispatch.routing.tokenCount)
                combine.hiddenSize = UInt32(wireCase.hiddenSize)
                combine.dtype = .f32
                frames.append(("COMBINE", Frame(header: combine, payload: TensorPayload.encode(dispatch.expected, as: .f32, width: wireCase.hiddenSize))))
            }
        }
        frames.append(("ERROR", ErrorMessage(code: .internal, message: "fuzz", requestID: 3).frame()))
        var ping = Heartbeat.frame(.ping, requestID: 4)
        ping.payload = ByteBuffer(bytes: [1, 2, 3, 4])
        frames.append(("PING", ping))
        frames.append(("PONG", Heartbeat.frame(.pong, requestID: 4)))
        let some = Array(keys.prefix(max(1, keys.count / 2)))
        frames.append(("SHARD_UPDATE", ShardMessage.frame(.shardUpdate, spec: ExpertSetCoding.spec(some, version: 5), requestID: 5)))
        frames.append(("SHARD_UPDATE", ShardMessage.frame(.shardUpdate, spec: ExpertSetCoding.spec(keys, version: 6), requestID: 5)))
        frames.append(("SHARD_STATUS", ShardMessage.frame(.shardStatus, spec: ExpertSetCoding.spec(some, version: 5), requestID: 5)))
        frames.append(("SHM_ATTACH", SharedMemoryAttachMessage(name: "/jindou-fuzz-absent", ringBytes: 1 << 20).frame(requestID: 6)))
        var attached = FrameHeader()
        attached.kind = .shmAttached
        frames.append(("SHM_ATTACHED", Frame(header: attached)))
        var rdma = FrameHeader()
        rdma.kind = .rdmaConnect
        var body = Jindou_V1_RdmaConnect()
        body.gid = Data(repeating: 0, count: 16)
        body.queuePair = 17
        body.mtu = 5
        body.slotBytes = 1 << 16
        body.receiveSlots = 8
        rdma.rdma = body
        frames.append(("RDMA_CONNECT", Frame(header: rdma)))
        var accept = rdma
        accept.kind = .rdmaAccept
        frames.append(("RDMA_ACCEPT", Frame(header: accept)))
        var unknown = FrameHeader()
        unknown.kind = MessageKind(rawValue: 42) ?? .unspecified
        frames.append(("unknown kind", Frame(header: unknown, payload: ByteBuffer(bytes: [9, 9]))))
        frames.append(("unspecified kind", Frame(header: FrameHeader())))
        return frames.map { name, frame in
            var header = frame.header
            header.protocolVersion = WireProtocol.version
            return (name, header, Array(frame.payload.readableBytesView))
        }
    }

    // MARK: - Process figures

    static func residentBytes(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }

    static func openFiles(_ pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
    }
}

extension FrameFuzzer.Report {
    /// The markdown section for docs/reliability.md.
    public var markdown: String {
        func table(_ counts: [String: Int]) -> [String] {
            counts.sorted { $0.value > $1.value }.map { "| \($0.key) | \($0.value) |" }
        }
        var lines = [
            "## Frame fuzzing (`jindouctl bench fuzz`)",
            "",
            "Target: a `jindoud worker` on \(target) (model `\(model)`, cluster secret set). Machine: \(machine). Run: \(date). Seed \(seed).",
            "",
            "| cases (connections) | fuzzed frames | frames sent (with valid HELLOs) | bytes sent | seconds | frames/s | hangs | undefined replies | failed health checks | worker exited |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            "| \(cases) | \(fuzzedFrames) | \(framesSent) | \(bytesSent) | \(String(format: "%.0f", seconds)) | \(String(format: "%.0f", framesPerSecond)) | \(hangs) | \(undefinedReplies) | \(failedHealthChecks) of \(healthChecks) | \(workerExitedDuringRun ? "yes" : "no") |",
            "",
            "After the run: the shard restored by a valid SHARD_UPDATE and \(finalDispatches) wire-case dispatches answered "
                + (finalDispatchesExact ? "bit-exactly" : String(format: "with max |diff| %.3g", finalDispatchMaxDifference))
                + " against Jindou's own expert code. Worker RSS \(residentBytesText(workerResidentBytesBefore)) before, "
                + "\(residentBytesText(workerResidentBytesAfter)) after; open files \(workerOpenFilesBefore) before, \(workerOpenFilesAfter) after.",
            "",
            "Frames by template:",
            "",
            "| template | frames |", "|---|---:|",
        ]
        lines += table(framesByTemplate)
        lines += ["", "Mutations:", "", "| mutation | frames |", "|---|---:|"]
        lines += table(mutations)
        lines += ["", "Replies (every one a frame a worker may send; every ERROR with a defined code):", "", "| reply | count |", "|---|---:|"]
        lines += table(repliesByKind)
        lines += ["", "| ERROR code | count |", "|---|---:|"]
        lines += table(errorCodes)
        if !undefinedReplyExamples.isEmpty { lines += ["", "Undefined replies: " + undefinedReplyExamples.joined(separator: "; ")] }
        if !hangExamples.isEmpty { lines += ["", "Hanging cases: " + hangExamples.map(String.init).joined(separator: ", ")] }
        return lines.joined(separator: "\n")
    }

    private func residentBytesText(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }
}
