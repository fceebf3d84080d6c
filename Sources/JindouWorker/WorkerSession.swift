import Dispatch
import JindouModel
import JindouTransport
import JindouWire
import Logging

/// What a worker serves: its experts and the model they belong to.
public struct WorkerState: Sendable {
    public let name: String
    public let description: ModelDescription
    public let fingerprint: String
    public let shard: ExpertShard
    /// Expert computations run here, one at a time, off the cooperative thread pool
    /// (they block on `concurrentPerform` and would starve async tasks).
    let computeQueue = DispatchQueue(label: "jindou.worker.compute")

    public init(name: String, description: ModelDescription, fingerprint: String, shard: ExpertShard) {
        self.name = name
        self.description = description
        self.fingerprint = fingerprint
        self.shard = shard
    }

    func compute(_ dispatch: DispatchMessage) async throws -> [Float] {
        try await withCheckedThrowingContinuation { continuation in
            computeQueue.async {
                continuation.resume(with: Result {
                    try shard.compute(layer: dispatch.layer, hidden: dispatch.hidden,
                                      tokenCount: dispatch.tokenCount, routing: dispatch.routing)
                })
            }
        }
    }
}

/// One coordinator connection on a worker: the protocol as a state machine.
///
///     awaitingHello ──HELLO (same version + fingerprint)──► ready ──DISPATCH──► COMBINE
///           └──── anything else / mismatch ──► ERROR, close
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
        guard hello.modelFingerprint == state.fingerprint else {
            let error = WireError.modelFingerprintMismatch(ours: state.fingerprint, theirs: hello.modelFingerprint)
            logger.error("refused coordinator", metadata: ["coordinator": "\(hello.coordinatorName)", "error": "\(error)"])
            return .replyAndClose(ErrorMessage(error, requestID: frame.requestID).frame())
        }
        phase = .ready
        logger.info("coordinator connected", metadata: ["coordinator": "\(hello.coordinatorName)"])
        let welcome = WelcomeMessage(
            modelFingerprint: state.fingerprint, workerName: state.name,
            experts: state.shard.keys.map { ($0.layer, $0.expert) }, expertBytes: UInt64(state.shard.byteCount))
        return .reply(welcome.frame(requestID: frame.requestID))
    }

    private func dispatch(_ frame: Frame) async -> SessionAction {
        let id = frame.requestID
        func refuse(_ code: ErrorCode, _ message: String) -> SessionAction {
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
        for expert in Set(message.routing.experts) where state.shard.experts[ExpertKey(layer: message.layer, expert: Int(expert))] == nil {
            return refuse(.expertNotHosted, "expert \(expert) of layer \(message.layer) is not hosted on worker \(state.name)")
        }
        do {
            let output = try await state.compute(message)
            return .reply(CombineMessage(requestID: id, layer: message.layer, hiddenSize: message.hiddenSize,
                                         dtype: message.dtype, output: output).frame())
        } catch {
            return refuse(.internal, "\(error)")
        }
    }
}
