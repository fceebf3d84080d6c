import Dispatch
import Foundation
import JindouAdmin
import JindouModel
import JindouPlacement
import JindouTransport
import JindouWire
import Logging
import Metrics
import Synchronization

/// What a worker serves: its (replaceable) experts, the model they belong to, and how it
/// authenticates coordinators.
public final class WorkerState: Sendable {
    public let name: String
    public let description: ModelDescription
    public let fingerprint: String
    public let store: ShardStore
    public let secret: ClusterSecret?
    public let cores: Int
    public let memoryBytes: UInt64
    /// Whether coordinators on this host may move connections to shared memory.
    public let acceptsSharedMemory: Bool
    /// Whether RDMA_CONNECT is taken (`--transport auto|rdma` with an active device), and on which device.
    public let acceptsRDMA: Bool
    public let rdmaDevice: String?
    /// Expert computations run here, one at a time, off the cooperative thread pool
    /// (they block on the kernel thread pool and would starve async tasks).
    let computeQueue = DispatchQueue(label: "jindou.worker.compute")
    /// Shard loads run here, so they never delay a dispatch.
    let loadQueue = DispatchQueue(label: "jindou.worker.load")
    /// Recent HELLO nonces: a replayed handshake is refused.
    private let seenNonces = Mutex<[Data]>([])
    /// What `/ready` judges: shard loads under way and, with --join, whether the coordinator
    /// accepted the last join or heartbeat (nil without --join).
    private let progress = Mutex<(loads: Int, joined: Bool?, joinError: String?)>((0, nil, nil))
    let dispatches = Counter(label: "jindou_node_dispatches_total")
    let refusedFrames = Counter(label: "jindou_node_refused_frames_total")
    let computeSeconds = Metrics.Timer(label: "jindou_node_compute_seconds", preferredDisplayUnit: .seconds)
    let expertsGauge = Gauge(label: "jindou_node_experts")
    let expertBytesGauge = Gauge(label: "jindou_node_expert_bytes")
    let loadsGauge = Gauge(label: "jindou_node_shard_loads_in_progress")

    public init(name: String, description: ModelDescription, fingerprint: String, store: ShardStore,
                secret: ClusterSecret?, cores: Int, memoryBytes: UInt64, acceptsSharedMemory: Bool = true,
                acceptsRDMA: Bool = false, rdmaDevice: String? = nil) {
        self.acceptsSharedMemory = acceptsSharedMemory
        self.acceptsRDMA = acceptsRDMA
        self.rdmaDevice = rdmaDevice
        self.name = name
        self.description = description
        self.fingerprint = fingerprint
        self.store = store
        self.secret = secret
        self.cores = cores
        self.memoryBytes = memoryBytes
    }

    func compute(_ dispatch: DispatchMessage, shard: ExpertShard) async throws -> [Float] {
        try await withCheckedThrowingContinuation { continuation in
            computeQueue.async {
                continuation.resume(with: Result {
                    try shard.compute(layer: dispatch.layer, hidden: dispatch.hidden,
                                      tokenCount: dispatch.tokenCount, routing: dispatch.routing)
                })
            }
        }
    }

    func load(_ keys: [ExpertKey], version: UInt64) async throws -> ExpertShard {
        loadsGauge.record(progress.withLock { $0.loads += 1; return $0.loads })
        defer {
            loadsGauge.record(progress.withLock { $0.loads -= 1; return $0.loads })
            recordShard()
        }
        // Without a local checkpoint, the new experts' bytes are fetched first.
        if let fetched = store.checkpoint as? FetchedWeightSource { try await fetched.ensure(keys, description: description) }
        return try await withCheckedThrowingContinuation { continuation in
            loadQueue.async {
                continuation.resume(with: Result { try self.store.apply(keys, version: version) })
            }
        }
    }

    /// The shard's size in the gauges.
    func recordShard() {
        let shard = store.shard
        expertsGauge.record(shard.experts.count)
        expertBytesGauge.record(shard.byteCount)
    }

    /// With --join: the outcome of the last join or heartbeat.
    func recordContact(joined: Bool, error: String? = nil) {
        progress.withLock {
            $0.joined = joined
            $0.joinError = error
        }
    }

    /// `/ready` of the worker's HTTP port: its node port serves, no shard load is under way
    /// (the experts it was given are mapped; without a local checkpoint, fetched) and, with
    /// --join, the coordinator accepted its last join or heartbeat.
    public func readiness() -> WorkerReadiness {
        let (loads, joined, joinError) = progress.withLock { $0 }
        let shard = store.shard
        var reasons: [String] = []
        if loads > 0 { reasons.append("\(loads) shard update(s) loading") }
        if joined == false { reasons.append("not joined to the coordinator" + (joinError.map { ": \($0)" } ?? "")) }
        return WorkerReadiness(ready: reasons.isEmpty, reason: reasons.isEmpty ? nil : reasons.joined(separator: "; "), name: name,
                               experts: shard.experts.count, expertBytes: shard.byteCount, shardVersion: store.shardVersion,
                               joined: joined, fetch: fetchStatus)
    }

    /// A worker without a local checkpoint: its fetch progress (nil otherwise).
    var fetchStatus: FetchStatus? {
        guard let fetched = store.checkpoint as? FetchedWeightSource else { return nil }
        let p = fetched.progress.withLock { $0 }
        return FetchStatus(fetchedBytes: p.fetchedBytes, totalBytes: p.totalBytes,
                           verifiedAtStartBytes: p.verifiedAtStartBytes, corruptAtStartBytes: p.refetchedCorruptBytes)
    }

    /// Records a nonce; false if it was seen recently (a replay).
    func acceptNonce(_ nonce: Data) -> Bool {
        seenNonces.withLock { seen in
            if seen.contains(nonce) { return false }
            seen.append(nonce)
            if seen.count > 4096 { seen.removeFirst(seen.count - 4096) }
            return true
        }
    }
}

/// One coordinator connection on a worker: the protocol as a state machine.
///
///     awaitingHello ──HELLO (same version, fingerprint, valid secret tag)──► ready
///     ready: DISPATCH → COMBINE, SHARD_UPDATE → SHARD_STATUS, PING → PONG,
///            SHM_ATTACH → SHM_ATTACHED (later frames through the rings) or ERROR,
///            RDMA_CONNECT → RDMA_ACCEPT (later frames as RDMA SENDs) or ERROR
///     awaitingHello ── anything else / mismatch ──► ERROR, close
///
/// Every bad input gets an ERROR frame naming the problem; only a lost byte stream or a
/// refused handshake closes the connection. Nothing here can crash the process.
public struct WorkerSession: FrameSession {
    enum Phase { case awaitingHello, ready }

    let state: WorkerState
    let logger: Logger
    private var phase = Phase.awaitingHello

    public init(state: WorkerState, logger: Logger) {
        self.state = state
        self.logger = logger
    }

    public mutating func handle(_ event: InboundFrame) async -> SessionAction {
        switch event {
        case .invalid(let failure):
            state.refusedFrames.increment()
            logger.warning("bad frame", metadata: ["error": "\(failure.error)"])
            let reply = ErrorMessage(failure.error, requestID: failure.requestID ?? 0).frame()
            // A version mismatch before the handshake is a refused handshake.
            if !failure.recoverable || phase == .awaitingHello { return .replyAndClose(reply) }
            return .reply(reply)
        case .frame(let frame):
            switch (phase, frame.kind) {
            case (.awaitingHello, .hello):
                return handshake(frame)
            case (_, .ping):
                // PONG echoes the payload: a raw round trip of any size on this connection.
                var pong = Heartbeat.frame(.pong, requestID: frame.requestID)
                pong.payload = frame.payload
                return .reply(pong)
            case (.ready, .dispatch):
                return await dispatch(frame)
            case (.ready, .shardUpdate):
                return await shardUpdate(frame)
            case (.ready, .shmAttach):
                return attachSharedMemory(frame)
            case (.ready, .rdmaConnect):
                return connectRDMA(frame)
            case (.awaitingHello, _):
                return .replyAndClose(ErrorMessage(
                    .unexpectedMessage(kind: "\(frame.kind)", state: "before the HELLO handshake"), requestID: frame.requestID).frame())
            default:
                return .reply(ErrorMessage(
                    .unexpectedMessage(kind: "\(frame.kind)", state: "from a coordinator"), requestID: frame.requestID).frame())
            }
        }
    }

    private mutating func handshake(_ frame: Frame) -> SessionAction {
        let hello: HelloMessage
        do {
            hello = try HelloMessage(frame: frame)
        } catch {
            return .replyAndClose(ErrorMessage(error, requestID: frame.requestID).frame())
        }
        if let secret = state.secret {
            let expected = secret.helloTag(nonce: hello.nonce, fingerprint: hello.modelFingerprint, coordinatorName: hello.coordinatorName)
            guard hello.nonce.count >= 16, ClusterSecret.matches(expected, hello.authTag), state.acceptNonce(hello.nonce) else {
                logger.error("refused unauthenticated coordinator", metadata: ["coordinator": "\(hello.coordinatorName.peerText())"])
                return .replyAndClose(ErrorMessage(
                    code: .unauthenticated, message: "handshake refused: not signed with this cluster's secret (or replayed)",
                    requestID: frame.requestID).frame())
            }
        }
        guard hello.modelFingerprint == state.fingerprint else {
            let error = WireError.modelFingerprintMismatch(ours: state.fingerprint, theirs: hello.modelFingerprint.peerText(limit: 64))
            logger.error("refused coordinator", metadata: ["coordinator": "\(hello.coordinatorName.peerText())", "error": "\(error)"])
            return .replyAndClose(ErrorMessage(error, requestID: frame.requestID).frame())
        }
        phase = .ready
        logger.info("coordinator connected", metadata: ["coordinator": "\(hello.coordinatorName.peerText())"])
        let shard = state.store.shard
        let tag = state.secret?.welcomeTag(nonce: hello.nonce, fingerprint: state.fingerprint, workerName: state.name) ?? Data()
        let welcome = WelcomeMessage(
            modelFingerprint: state.fingerprint, workerName: state.name,
            experts: shard.keys.map { ($0.layer, $0.expert) }, expertBytes: UInt64(shard.byteCount),
            authTag: tag, cores: state.cores, memoryBytes: state.memoryBytes, shardVersion: state.store.shardVersion,
            hostID: HostIdentity.bootID, acceptsSharedMemory: state.acceptsSharedMemory, acceptsRDMA: state.acceptsRDMA)
        return .reply(welcome.frame(requestID: frame.requestID))
    }

    private func dispatch(_ frame: Frame) async -> SessionAction {
        let id = frame.requestID
        func refuse(_ code: ErrorCode, _ message: String) -> SessionAction {
            state.refusedFrames.increment()
            logger.warning("refused dispatch", metadata: ["request": "\(id)", "error": "\(message)"])
            return .reply(ErrorMessage(code: code, message: message, requestID: id).frame())
        }
        let message: DispatchMessage
        do {
            message = try DispatchMessage(frame: frame, expertLimit: state.description.expertCount)
        } catch {
            return refuse(error.code, error.description)
        }
        guard state.description.sparseLayers.contains(message.layer) else {
            return refuse(.unknownLayer, "layer \(message.layer) has no routed experts (MoE layers: \(state.description.sparseLayers.count) of \(state.description.layerCount))")
        }
        guard message.hiddenSize == state.description.hiddenSize else {
            return refuse(.badRouting, "hidden_size \(message.hiddenSize) does not match the model's \(state.description.hiddenSize)")
        }
        let shard = state.store.shard
        for expert in Set(message.routing.experts) where shard.experts[ExpertKey(layer: message.layer, expert: Int(expert))] == nil {
            return refuse(.expertNotHosted, "expert \(expert) of layer \(message.layer) is not hosted on worker \(state.name)")
        }
        do {
            let start = ContinuousClock.now
            let output = try await state.compute(message, shard: shard)
            let nanoseconds = UInt64(max(0, (ContinuousClock.now - start).nanoseconds))
            state.dispatches.increment()
            state.computeSeconds.recordNanoseconds(Int64(nanoseconds))
            return .reply(CombineMessage(requestID: id, layer: message.layer, hiddenSize: message.hiddenSize,
                                         dtype: message.dtype.combineDType, output: output, computeNanoseconds: nanoseconds).frame())
        } catch {
            return refuse(.internal, "\(error)")
        }
    }

    /// Maps the coordinator's rings; the connection's later frames go through them. Only
    /// after the handshake, so only an authenticated coordinator can move a connection.
    private mutating func attachSharedMemory(_ frame: Frame) -> SessionAction {
        let id = frame.requestID
        guard state.acceptsSharedMemory else {
            return .reply(ErrorMessage(code: .notReady, message: "worker \(state.name) does not accept shared memory (--transport tcp)",
                                       requestID: id).frame())
        }
        do {
            let request = try SharedMemoryAttachMessage(frame: frame)
            let rings = try SharedMemoryChannel.attach(name: request.name)
            guard rings.ringBytes == request.ringBytes else {
                rings.close()
                return .reply(ErrorMessage(.badMessage(kind: "SHM_ATTACH", reason: "rings of \(rings.ringBytes) bytes, not the \(request.ringBytes) announced"),
                                           requestID: id).frame())
            }
            logger.info("connection moved to shared memory", metadata: ["rings": "\(request.name)", "ring_bytes": "\(rings.ringBytes)"])
            var header = FrameHeader()
            header.kind = .shmAttached
            header.requestID = id
            return .replyAndAttach(Frame(header: header), rings)
        } catch let error as WireError {
            return .reply(ErrorMessage(error, requestID: id).frame())
        } catch {
            logger.warning("could not map a coordinator's shared memory", metadata: ["error": "\(error)"])
            return .reply(ErrorMessage(code: .notReady, message: "\(error)", requestID: id).frame())
        }
    }

    /// Opens a queue pair with its receives posted, connects it to the coordinator's and
    /// answers with its own parameters; the connection's later frames travel over RDMA.
    /// Only after the handshake: the parameters come from an authenticated coordinator.
    private mutating func connectRDMA(_ frame: Frame) -> SessionAction {
        let id = frame.requestID
        guard state.acceptsRDMA else {
            return .reply(ErrorMessage(code: .notReady, message: "worker \(state.name) does not accept RDMA (no active device, or --transport tcp|shm)",
                                       requestID: id).frame())
        }
        do {
            let remote = try RDMAConnectionParameters(frame: frame, kind: .rdmaConnect)
            let channel = try RDMAChannel(device: state.rdmaDevice)
            try channel.connect(to: remote)
            logger.info("connection moved to RDMA", metadata: ["queue_pair": "\(channel.local.queuePair)", "peer_queue_pair": "\(remote.queuePair)"])
            return .replyAndAttach(channel.local.frame(.rdmaAccept, requestID: id), channel)
        } catch {
            logger.warning("could not connect a coordinator's RDMA queue pair", metadata: ["error": "\(error)"])
            let code: ErrorCode = if case .badParameters = error { .malformedFrame } else { .notReady }
            return .reply(ErrorMessage(code: code, message: error.description, requestID: id).frame())
        }
    }

    private func shardUpdate(_ frame: Frame) async -> SessionAction {
        let id = frame.requestID
        do {
            let spec = try ShardMessage.spec(frame, kind: .shardUpdate)
            let keys = try ExpertSetCoding.keys(spec, expertCount: state.description.expertCount)
            let sparse = Set(state.description.sparseLayers)
            if let bad = keys.first(where: { !sparse.contains($0.layer) }) {
                return .reply(ErrorMessage(code: .unknownLayer, message: "layer \(bad.layer) has no routed experts", requestID: id).frame())
            }
            let shard = try await state.load(keys, version: spec.version)
            logger.info("shard updated", metadata: ["version": "\(spec.version)", "experts": "\(shard.experts.count)",
                                                    "expert_bytes": "\(shard.byteCount)"])
            return .reply(ShardMessage.frame(
                .shardStatus, spec: ExpertSetCoding.spec(shard.keys, version: spec.version, expertBytes: UInt64(shard.byteCount)),
                requestID: id))
        } catch let error as WireError {
            return .reply(ErrorMessage(error, requestID: id).frame())
        } catch {
            logger.error("shard update failed", metadata: ["error": "\(error)"])
            return .reply(ErrorMessage(code: .loadFailed, message: "\(error)", requestID: id).frame())
        }
    }
}

/// A worker's `/ready` answer.
public struct WorkerReadiness: Codable, Sendable {
    public var ready: Bool
    public var reason: String?
    public var name: String
    public var experts: Int
    public var expertBytes: Int
    public var shardVersion: UInt64
    /// nil without --join.
    public var joined: Bool?
    public var fetch: FetchStatus?

    enum CodingKeys: String, CodingKey {
        case ready, reason, name, experts, joined, fetch
        case expertBytes = "expert_bytes"
        case shardVersion = "shard_version"
    }
}
