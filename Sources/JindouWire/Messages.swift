import Foundation
import JindouNumerics
import JindouRouting
import NIOCore

/// Element type of hidden states on the wire.
///
/// `fp8` is DeepEP's compact dispatch: each token's row in FP8 E4M3, 1 byte per value,
/// with one f32 scale per 128 values of the row (their max |x| / 448, so an outlier channel
/// costs precision only in its own block); its combine comes back in bf16.
public enum WireDType: String, Sendable, CaseIterable {
    case f32
    case bf16
    case fp8

    public var protobuf: TensorDType {
        switch self {
        case .f32: .f32
        case .bf16: .bf16
        case .fp8: .fp8E4M3
        }
    }

    /// Values that share one fp8 scale.
    public static let fp8BlockWidth = 128

    /// Bytes of one value (fp8 rows carry 4-byte scales besides, see `payloadBytes`).
    public var byteSize: Int {
        switch self {
        case .f32: 4
        case .bf16: 2
        case .fp8: 1
        }
    }

    /// Bytes of a payload of `rows` rows of `width` values.
    public func payloadBytes(rows: Int, width: Int) -> Int {
        rows * width * byteSize + (self == .fp8 ? rows * Self.fp8Blocks(width: width) * 4 : 0)
    }

    /// Scales per fp8 row.
    public static func fp8Blocks(width: Int) -> Int {
        (width + fp8BlockWidth - 1) / fp8BlockWidth
    }

    /// The element type of the combine answering a dispatch in this type: sums of experts
    /// go back in bf16 when the dispatch was fp8 (as DeepEP does), else in the same type.
    public var combineDType: WireDType { self == .fp8 ? .bf16 : self }

    public init?(_ dtype: TensorDType) {
        switch dtype {
        case .f32: self = .f32
        case .bf16: self = .bf16
        case .fp8E4M3: self = .fp8
        default: return nil
        }
    }
}

/// Tensor payloads: little-endian rows of floats, widened to/from `Float` on each side.
/// An fp8 payload is `rows × blocks` f32 scales (row-major), then `rows × width` E4M3 bytes.
public enum TensorPayload {
    public static func encode(_ values: [Float], as dtype: WireDType, width: Int) -> ByteBuffer {
        precondition(width > 0 && values.count % width == 0, "payload of \(values.count) values is not rows of \(width)")
        let rows = values.count / width
        var buffer = ByteBuffer()
        buffer.reserveCapacity(dtype.payloadBytes(rows: rows, width: width))
        switch dtype {
        case .f32:
            values.withUnsafeBytes { _ = buffer.writeBytes($0) }
        case .bf16:
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: values.count * 2) { raw in
                let out = raw.bindMemory(to: UInt16.self)
                for i in values.indices { out[i] = BFloat16Conversion.bits(from: values[i]).littleEndian }
                return values.count * 2
            }
        case .fp8:
            let blocks = WireDType.fp8Blocks(width: width), block = WireDType.fp8BlockWidth
            let bytes = dtype.payloadBytes(rows: rows, width: width)
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bytes) { raw in
                values.withUnsafeBufferPointer { x in
                    let data = rows * blocks * 4
                    for r in 0..<rows {
                        for b in 0..<blocks {
                            let columns = (b * block)..<min(width, (b + 1) * block)
                            var largest: Float = 0
                            for c in columns { largest = max(largest, abs(x[r * width + c])) }
                            // An all-zero block keeps scale 1 (every byte 0); non-finite values stay non-finite.
                            let scale = largest > 0 ? largest / 448 : 1
                            raw.storeBytes(of: scale.bitPattern.littleEndian, toByteOffset: (r * blocks + b) * 4, as: UInt32.self)
                            let inverse = 1 / scale
                            for c in columns { raw[data + r * width + c] = FP8E4M3.encode(x[r * width + c] * inverse) }
                        }
                    }
                }
                return bytes
            }
        }
        return buffer
    }

    /// Reads `rows × width` values; throws if the payload has another length.
    public static func decode(_ buffer: ByteBuffer, rows: Int, width: Int, as dtype: WireDType, kind: String) throws(WireError) -> [Float] {
        let (count, overflow) = rows.multipliedReportingOverflow(by: width)
        guard !overflow, count < Int.max / 8 else { throw .badMessage(kind: kind, reason: "\(rows) × \(width) values overflow") }
        let expected = dtype.payloadBytes(rows: rows, width: width)
        guard buffer.readableBytes == expected else {
            throw .badMessage(kind: kind, reason: "payload has \(buffer.readableBytes) bytes, expected \(rows) × \(width) \(dtype.rawValue) values (\(expected) bytes)")
        }
        return buffer.withUnsafeReadableBytes { raw in
            [Float](unsafeUninitializedCapacity: count) { out, initialized in
                switch dtype {
                case .f32:
                    _ = raw.copyBytes(to: UnsafeMutableRawBufferPointer(out))
                case .bf16:
                    for i in 0..<count {
                        out[i] = BFloat16Conversion.float(fromBits: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
                    }
                case .fp8:
                    let blocks = WireDType.fp8Blocks(width: width), block = WireDType.fp8BlockWidth
                    let data = rows * blocks * 4
                    for r in 0..<rows {
                        for b in 0..<blocks {
                            let scale = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: (r * blocks + b) * 4, as: UInt32.self)))
                            for c in (b * block)..<min(width, (b + 1) * block) {
                                out[r * width + c] = FP8E4M3.float(raw[data + r * width + c]) * scale
                            }
                        }
                    }
                }
                initialized = count
            }
        }
    }
}

/// Coordinator → worker: the tokens of one MoE layer routed to this worker's experts.
public struct DispatchMessage: Sendable, Equatable {
    public var requestID: UInt64
    public var layer: Int
    public var placementVersion: UInt64
    public var hiddenSize: Int
    public var dtype: WireDType
    /// Per token, the experts *on this worker* and their weights (global expert ids).
    public var routing: RoutingDecision
    /// `tokenCount × hiddenSize` hidden states (post-attention-norm), row-major.
    public var hidden: [Float]

    public init(requestID: UInt64, layer: Int, placementVersion: UInt64, hiddenSize: Int, dtype: WireDType,
                routing: RoutingDecision, hidden: [Float]) {
        self.requestID = requestID
        self.layer = layer
        self.placementVersion = placementVersion
        self.hiddenSize = hiddenSize
        self.dtype = dtype
        self.routing = routing
        self.hidden = hidden
    }

    public var tokenCount: Int { routing.tokenCount }

    public func frame() -> Frame {
        var header = FrameHeader()
        header.kind = .dispatch
        header.requestID = requestID
        header.layer = UInt32(layer)
        header.placementVersion = placementVersion
        header.tokenCount = UInt32(tokenCount)
        header.hiddenSize = UInt32(hiddenSize)
        header.dtype = dtype.protobuf
        var routing = Jindou_V1_DispatchRouting()
        routing.offsets = self.routing.offsets.map { UInt32($0) }
        routing.experts = self.routing.experts.map { UInt32(bitPattern: $0) }
        routing.weights = self.routing.weights
        header.routing = routing
        return Frame(header: header, payload: TensorPayload.encode(hidden, as: dtype, width: hiddenSize))
    }

    /// Parses and validates a DISPATCH frame's structure (not which experts are hosted).
    public init(frame: Frame, expertLimit: Int) throws(WireError) {
        let h = frame.header
        guard h.kind == .dispatch else { throw .unexpectedMessage(kind: "\(h.kind)", state: "where DISPATCH was expected") }
        guard let dtype = WireDType(h.dtype) else { throw .badMessage(kind: "DISPATCH", reason: "unsupported dtype \(h.dtype)") }
        guard case .routing(let r)? = h.body else { throw .badMessage(kind: "DISPATCH", reason: "no routing") }
        let tokens = Int(h.tokenCount)
        let hiddenSize = Int(h.hiddenSize)
        guard hiddenSize > 0 else { throw .badMessage(kind: "DISPATCH", reason: "hidden_size is 0") }
        guard r.offsets.count == tokens + 1, r.offsets.first == 0 else {
            throw .badMessage(kind: "DISPATCH", reason: "routing has \(r.offsets.count) offsets for \(tokens) tokens (need \(tokens + 1), starting at 0)")
        }
        for i in 0..<tokens where r.offsets[i] > r.offsets[i + 1] {
            throw .badMessage(kind: "DISPATCH", reason: "routing offsets decrease at token \(i)")
        }
        guard Int(r.offsets[tokens]) == r.experts.count, r.experts.count == r.weights.count else {
            throw .badMessage(kind: "DISPATCH", reason: "routing lists \(r.experts.count) experts and \(r.weights.count) weights, offsets end at \(r.offsets[tokens])")
        }
        if let bad = r.experts.first(where: { $0 >= UInt32(expertLimit) }) {
            throw .badMessage(kind: "DISPATCH", reason: "expert \(bad) is out of range (model has \(expertLimit))")
        }
        if let bad = r.weights.first(where: { !$0.isFinite }) {
            throw .badMessage(kind: "DISPATCH", reason: "routing weight \(bad) is not finite")
        }
        for t in 0..<tokens {
            let chosen = r.experts[Int(r.offsets[t])..<Int(r.offsets[t + 1])]
            if Set(chosen).count != chosen.count {
                throw .badMessage(kind: "DISPATCH", reason: "token \(t) lists an expert twice")
            }
        }
        let (count, overflow) = tokens.multipliedReportingOverflow(by: hiddenSize)
        guard !overflow else { throw .badMessage(kind: "DISPATCH", reason: "token_count × hidden_size overflows") }
        requestID = h.requestID
        layer = Int(h.layer)
        placementVersion = h.placementVersion
        self.hiddenSize = hiddenSize
        self.dtype = dtype
        // Experts are listed in ascending order per token in a RoutingDecision; sort to be safe.
        var decision = RoutingDecision()
        for t in 0..<tokens {
            let range = Int(r.offsets[t])..<Int(r.offsets[t + 1])
            let pairs = range.map { (Int32(r.experts[$0]), r.weights[$0]) }.sorted { $0.0 < $1.0 }
            decision.append(experts: pairs.map(\.0), weights: pairs.map(\.1))
        }
        routing = decision
        hidden = try TensorPayload.decode(frame.payload, rows: tokens, width: hiddenSize, as: dtype, kind: "DISPATCH")
    }
}

/// Worker → coordinator: per dispatched token, the weighted sum of this worker's experts.
public struct CombineMessage: Sendable, Equatable {
    public var requestID: UInt64
    public var layer: Int
    public var hiddenSize: Int
    public var dtype: WireDType
    public var output: [Float]
    /// Time the worker spent computing `output` (0: not measured).
    public var computeNanoseconds: UInt64

    public init(requestID: UInt64, layer: Int, hiddenSize: Int, dtype: WireDType, output: [Float], computeNanoseconds: UInt64 = 0) {
        self.computeNanoseconds = computeNanoseconds
        self.requestID = requestID
        self.layer = layer
        self.hiddenSize = hiddenSize
        self.dtype = dtype
        self.output = output
    }

    public var tokenCount: Int { output.count / max(1, hiddenSize) }

    public func frame() -> Frame {
        var header = FrameHeader()
        header.kind = .combine
        header.requestID = requestID
        header.layer = UInt32(layer)
        header.tokenCount = UInt32(tokenCount)
        header.hiddenSize = UInt32(hiddenSize)
        header.dtype = dtype.protobuf
        header.computeNanoseconds = computeNanoseconds
        return Frame(header: header, payload: TensorPayload.encode(output, as: dtype, width: hiddenSize))
    }

    public init(frame: Frame) throws(WireError) {
        let h = frame.header
        guard h.kind == .combine else { throw .unexpectedMessage(kind: "\(h.kind)", state: "where COMBINE was expected") }
        guard let dtype = WireDType(h.dtype) else { throw .badMessage(kind: "COMBINE", reason: "unsupported dtype \(h.dtype)") }
        requestID = h.requestID
        layer = Int(h.layer)
        hiddenSize = Int(h.hiddenSize)
        self.dtype = dtype
        computeNanoseconds = h.computeNanoseconds
        guard h.hiddenSize > 0 || h.tokenCount == 0 else { throw .badMessage(kind: "COMBINE", reason: "hidden_size is 0") }
        output = try TensorPayload.decode(frame.payload, rows: Int(h.tokenCount), width: Int(h.hiddenSize), as: dtype, kind: "COMBINE")
    }
}

/// Handshake, coordinator → worker.
public struct HelloMessage: Sendable, Equatable {
    public var modelFingerprint: String
    public var coordinatorName: String
    public var nonce: Data
    public var authTag: Data

    /// A HELLO, authenticated with `secret` when the cluster has one.
    public init(modelFingerprint: String, coordinatorName: String, secret: ClusterSecret? = nil) {
        self.modelFingerprint = modelFingerprint
        self.coordinatorName = coordinatorName
        nonce = ClusterSecret.nonce()
        authTag = secret?.helloTag(nonce: nonce, fingerprint: modelFingerprint, coordinatorName: coordinatorName) ?? Data()
    }

    public func frame(requestID: UInt64 = 0) -> Frame {
        var header = FrameHeader()
        header.kind = .hello
        header.requestID = requestID
        var hello = Jindou_V1_Hello()
        hello.protocolVersion = WireProtocol.version
        hello.modelFingerprint = modelFingerprint
        hello.coordinatorName = coordinatorName
        hello.nonce = nonce
        hello.authTag = authTag
        header.hello = hello
        return Frame(header: header)
    }

    public init(frame: Frame) throws(WireError) {
        guard frame.kind == .hello, case .hello(let hello)? = frame.header.body else {
            throw .unexpectedMessage(kind: "\(frame.kind)", state: "before the HELLO handshake")
        }
        guard hello.protocolVersion == WireProtocol.version else {
            throw .protocolVersionMismatch(ours: WireProtocol.version, theirs: hello.protocolVersion)
        }
        modelFingerprint = hello.modelFingerprint
        coordinatorName = hello.coordinatorName
        nonce = hello.nonce
        authTag = hello.authTag
    }
}

/// Handshake answer, worker → coordinator.
public struct WelcomeMessage: Sendable, Equatable {
    public var modelFingerprint: String
    public var workerName: String
    public var experts: [(layer: Int, expert: Int)]
    public var expertBytes: UInt64
    public var authTag: Data
    public var cores: Int
    public var memoryBytes: UInt64
    public var shardVersion: UInt64
    /// The worker's kernel boot id (`HostIdentity.bootID`); "" from workers that do not say.
    public var hostID: String
    public var acceptsSharedMemory: Bool
    /// Whether the worker takes RDMA_CONNECT (it has an active RDMA device and its
    /// --transport allows it).
    public var acceptsRDMA: Bool

    public init(modelFingerprint: String, workerName: String, experts: [(layer: Int, expert: Int)], expertBytes: UInt64,
                authTag: Data = Data(), cores: Int = 0, memoryBytes: UInt64 = 0, shardVersion: UInt64 = 0,
                hostID: String = "", acceptsSharedMemory: Bool = false, acceptsRDMA: Bool = false) {
        self.hostID = hostID
        self.acceptsRDMA = acceptsRDMA
        self.acceptsSharedMemory = acceptsSharedMemory
        self.modelFingerprint = modelFingerprint
        self.workerName = workerName
        self.experts = experts
        self.expertBytes = expertBytes
        self.authTag = authTag
        self.cores = cores
        self.memoryBytes = memoryBytes
        self.shardVersion = shardVersion
    }

    public static func == (a: WelcomeMessage, b: WelcomeMessage) -> Bool {
        a.modelFingerprint == b.modelFingerprint && a.workerName == b.workerName && a.expertBytes == b.expertBytes
            && a.experts.map(\.layer) == b.experts.map(\.layer) && a.experts.map(\.expert) == b.experts.map(\.expert)
            && a.authTag == b.authTag && a.cores == b.cores && a.memoryBytes == b.memoryBytes && a.shardVersion == b.shardVersion
            && a.hostID == b.hostID && a.acceptsSharedMemory == b.acceptsSharedMemory && a.acceptsRDMA == b.acceptsRDMA
    }

    public func frame(requestID: UInt64 = 0) -> Frame {
        var header = FrameHeader()
        header.kind = .welcome
        header.requestID = requestID
        var welcome = Jindou_V1_Welcome()
        welcome.protocolVersion = WireProtocol.version
        welcome.modelFingerprint = modelFingerprint
        welcome.workerName = workerName
        welcome.experts = experts.map {
            var ref = Jindou_V1_ExpertRef()
            ref.layer = UInt32($0.layer)
            ref.expert = UInt32($0.expert)
            return ref
        }
        welcome.expertBytes = expertBytes
        welcome.authTag = authTag
        welcome.cores = UInt32(cores)
        welcome.memoryBytes = memoryBytes
        welcome.shardVersion = shardVersion
        welcome.hostID = hostID
        welcome.acceptsSharedMemory = acceptsSharedMemory
        welcome.acceptsRdma = acceptsRDMA
        header.welcome = welcome
        return Frame(header: header)
    }

    public init(frame: Frame) throws(WireError) {
        if frame.kind == .error { throw ErrorMessage(frame: frame).wireError }
        guard frame.kind == .welcome, case .welcome(let welcome)? = frame.header.body else {
            throw .unexpectedMessage(kind: "\(frame.kind)", state: "where WELCOME was expected")
        }
        modelFingerprint = welcome.modelFingerprint
        workerName = welcome.workerName
        experts = welcome.experts.map { (Int($0.layer), Int($0.expert)) }
        expertBytes = welcome.expertBytes
        authTag = welcome.authTag
        cores = Int(welcome.cores)
        memoryBytes = welcome.memoryBytes
        shardVersion = welcome.shardVersion
        hostID = welcome.hostID
        acceptsSharedMemory = welcome.acceptsSharedMemory
        acceptsRDMA = welcome.acceptsRdma
    }
}

/// SHM_ATTACH (coordinator → worker): the shared-memory object to move the connection to.
public struct SharedMemoryAttachMessage: Sendable, Equatable {
    public var name: String
    public var ringBytes: UInt64

    public init(name: String, ringBytes: UInt64) {
        self.name = name
        self.ringBytes = ringBytes
    }

    public func frame(requestID: UInt64) -> Frame {
        var header = FrameHeader()
        header.kind = .shmAttach
        header.requestID = requestID
        var body = Jindou_V1_SharedMemoryAttach()
        body.name = name
        body.ringBytes = ringBytes
        header.shmAttach = body
        return Frame(header: header)
    }

    public init(frame: Frame) throws(WireError) {
        guard frame.kind == .shmAttach, case .shmAttach(let body)? = frame.header.body else {
            throw .badMessage(kind: "\(frame.kind)", reason: "SHM_ATTACH without its body")
        }
        guard body.name.hasPrefix("/"), body.name.utf8.count < 250, !body.name.dropFirst().contains("/") else {
            throw .badMessage(kind: "SHM_ATTACH", reason: "shared-memory name \"\(body.name.prefix(64))\" is not a single path component")
        }
        name = body.name
        ringBytes = body.ringBytes
    }
}

/// Either way: a request failed.
public struct ErrorMessage: Sendable, Equatable {
    public var code: ErrorCode
    public var message: String
    public var requestID: UInt64

    public init(code: ErrorCode, message: String, requestID: UInt64) {
        self.code = code
        self.message = message
        self.requestID = requestID
    }

    public init(_ error: WireError, requestID: UInt64) {
        self.init(code: error.code, message: error.description, requestID: requestID)
    }

    public init(frame: Frame) {
        if case .error(let e)? = frame.header.body {
            code = e.code
            message = e.message
        } else {
            code = .unspecified
            message = "ERROR frame without a body"
        }
        requestID = frame.requestID
    }

    public func frame() -> Frame {
        var header = FrameHeader()
        header.kind = .error
        header.requestID = requestID
        var reply = Jindou_V1_ErrorReply()
        reply.code = code
        reply.message = message
        header.error = reply
        return Frame(header: header)
    }

    public var wireError: WireError { .remote(code: "\(code)", message: message) }
}

/// PING / PONG frames.
public enum Heartbeat {
    public static func frame(_ kind: MessageKind, requestID: UInt64) -> Frame {
        var header = FrameHeader()
        header.kind = kind
        header.requestID = requestID
        return Frame(header: header)
    }
}

/// SHARD_UPDATE (coordinator → worker) and SHARD_STATUS (the answer): a set of experts.
public enum ShardMessage {
    public static func frame(_ kind: MessageKind, spec: Jindou_V1_ShardSpec, requestID: UInt64) -> Frame {
        var header = FrameHeader()
        header.kind = kind
        header.requestID = requestID
        header.shard = spec
        return Frame(header: header)
    }

    public static func spec(_ frame: Frame, kind: MessageKind) throws(WireError) -> Jindou_V1_ShardSpec {
        if frame.kind == .error { throw ErrorMessage(frame: frame).wireError }
        guard frame.kind == kind, case .shard(let spec)? = frame.header.body else {
            throw .unexpectedMessage(kind: "\(frame.kind)", state: "where \(kind) was expected")
        }
        return spec
    }
}

extension String {
    /// A peer-supplied string as it may appear in logs and error messages: control characters
    /// escaped, at most `limit` characters (a HELLO's 100 kB name must not become a 100 kB log line).
    public func peerText(limit: Int = 80) -> String {
        var out = ""
        for scalar in unicodeScalars.prefix(limit) {
            out += scalar.properties.generalCategory == .control ? scalar.escaped(asASCII: true) : String(scalar)
        }
        let count = unicodeScalars.count
        return count > limit ? out + "…(\(utf8.count) bytes)" : out
    }
}
