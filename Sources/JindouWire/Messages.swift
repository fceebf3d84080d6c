import Foundation
import JindouNumerics
import JindouRouting
import NIOCore

/// Element type of hidden states on the wire.
public enum WireDType: String, Sendable, CaseIterable {
    case f32
    case bf16

    public var protobuf: TensorDType { self == .f32 ? .f32 : .bf16 }
    public var byteSize: Int { self == .f32 ? 4 : 2 }

    public init?(_ dtype: TensorDType) {
        switch dtype {
        case .f32: self = .f32
        case .bf16: self = .bf16
        default: return nil
        }
    }
}

/// Tensor payloads: little-endian rows of floats, widened to/from `Float` on each side.
public enum TensorPayload {
    public static func encode(_ values: [Float], as dtype: WireDType) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(values.count * dtype.byteSize)
        switch dtype {
        case .f32:
            values.withUnsafeBytes { _ = buffer.writeBytes($0) }
        case .bf16:
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: values.count * 2) { raw in
                let out = raw.bindMemory(to: UInt16.self)
                for i in values.indices { out[i] = BFloat16Conversion.bits(from: values[i]).littleEndian }
                return values.count * 2
            }
        }
        return buffer
    }

    /// Reads `count` values; throws if the payload has another length.
    public static func decode(_ buffer: ByteBuffer, count: Int, as dtype: WireDType, kind: String) throws(WireError) -> [Float] {
        guard buffer.readableBytes == count * dtype.byteSize else {
            throw .badMessage(kind: kind, reason: "payload has \(buffer.readableBytes) bytes, expected \(count) \(dtype.rawValue) values (\(count * dtype.byteSize) bytes)")
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
        return Frame(header: header, payload: TensorPayload.encode(hidden, as: dtype))
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
        hidden = try TensorPayload.decode(frame.payload, count: count, as: dtype, kind: "DISPATCH")
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
        return Frame(header: header, payload: TensorPayload.encode(output, as: dtype))
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
        output = try TensorPayload.decode(frame.payload, count: Int(h.tokenCount) * Int(h.hiddenSize), as: dtype, kind: "COMBINE")
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

    public init(modelFingerprint: String, workerName: String, experts: [(layer: Int, expert: Int)], expertBytes: UInt64,
                authTag: Data = Data(), cores: Int = 0, memoryBytes: UInt64 = 0, shardVersion: UInt64 = 0) {
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
