import Foundation
import JindouModel
import JindouTransport
import JindouWire
import Logging
import Synchronization

/// Errors of the cluster, naming the worker at fault.
public enum ClusterError: Error, Equatable, CustomStringConvertible {
    case workerUnavailable(worker: String, reason: String)
    case workerRefused(worker: String, reason: String)
    case workerFailed(worker: String, reason: String)
    case badReply(worker: String, reason: String)

    public var description: String {
        switch self {
        case .workerUnavailable(let worker, let reason): "worker \(worker) is unavailable: \(reason)"
        case .workerRefused(let worker, let reason): "worker \(worker) refused the handshake: \(reason)"
        case .workerFailed(let worker, let reason): "worker \(worker) failed: \(reason)"
        case .badReply(let worker, let reason): "worker \(worker) sent a bad reply: \(reason)"
        }
    }
}

/// One configured worker: where it is and what it said at the handshake.
public struct WorkerInfo: Sendable {
    public let endpoint: Endpoint
    public let name: String
    public let experts: [ExpertKey]
    public let expertBytes: UInt64
}

/// Connections to the workers. A connection that dies is re-established (with a fresh
/// handshake) the next time it is needed, so a restarted worker rejoins on its own.
public actor WorkerPool {
    public let endpoints: [Endpoint]
    public let fingerprint: String
    public let coordinatorName: String
    private let timeoutSeconds: Double
    private let logger: Logger
    private var links: [Int: any WorkerLink] = [:]
    private var infos: [Int: WorkerInfo] = [:]
    private let requestIDs = Atomic<UInt64>(1)

    public init(endpoints: [Endpoint], fingerprint: String, coordinatorName: String = "coordinator",
                timeoutSeconds: Double = 120, logger: Logger) {
        self.endpoints = endpoints
        self.fingerprint = fingerprint
        self.coordinatorName = coordinatorName
        self.timeoutSeconds = timeoutSeconds
        self.logger = logger
    }

    /// A fresh request id (unique per coordinator process).
    public nonisolated func nextRequestID() -> UInt64 {
        requestIDs.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    /// Connects to every worker and shakes hands; fails naming the first worker that
    /// cannot be reached or refuses.
    @discardableResult
    public func connectAll() async throws -> [WorkerInfo] {
        var result: [WorkerInfo] = []
        for index in endpoints.indices { result.append(try await connect(index)) }
        return result
    }

    /// What each worker reported at its last handshake.
    public var workers: [WorkerInfo] { endpoints.indices.compactMap { infos[$0] } }

    public func info(_ index: Int) -> WorkerInfo? { infos[index] }

    /// Name of worker `index` for messages (its handshake name, else its address).
    public func label(_ index: Int) -> String { infos[index]?.name ?? endpoints[index].description }

    @discardableResult
    private func connect(_ index: Int) async throws -> WorkerInfo {
        let endpoint = endpoints[index]
        let link: TCPWorkerLink
        do {
            link = try await TCPWorkerLink.connect(to: endpoint, timeoutSeconds: timeoutSeconds)
        } catch {
            throw ClusterError.workerUnavailable(worker: endpoint.description, reason: "\(error)")
        }
        let welcome: WelcomeMessage
        do {
            let reply = try await link.exchange(HelloMessage(modelFingerprint: fingerprint, coordinatorName: coordinatorName)
                .frame(requestID: nextRequestID()))
            welcome = try WelcomeMessage(frame: reply)
        } catch let error as WireError {
            await link.close()
            throw ClusterError.workerRefused(worker: endpoint.description, reason: error.description)
        } catch {
            await link.close()
            throw ClusterError.workerUnavailable(worker: endpoint.description, reason: "\(error)")
        }
        guard welcome.modelFingerprint == fingerprint else {
            await link.close()
            throw ClusterError.workerRefused(
                worker: endpoint.description,
                reason: WireError.modelFingerprintMismatch(ours: fingerprint, theirs: welcome.modelFingerprint).description)
        }
        let info = WorkerInfo(endpoint: endpoint, name: welcome.workerName,
                              experts: welcome.experts.map { ExpertKey(layer: $0.layer, expert: $0.expert) }.sorted(),
                              expertBytes: welcome.expertBytes)
        if let previous = infos[index], previous.experts != info.experts {
            logger.warning("worker came back with other experts", metadata: ["worker": "\(info.name)"])
        }
        links[index] = link
        infos[index] = info
        logger.info("worker connected", metadata: ["worker": "\(info.name)", "address": "\(endpoint)",
                                                   "experts": "\(info.experts.count)"])
        return info
    }

    /// A live link to worker `index`, reconnecting if the last one died.
    public func link(_ index: Int) async throws -> any WorkerLink {
        if let link = links[index], link.isActive { return link }
        links[index] = nil
        let info = try await connect(index)
        if let previous = infos[index], previous.experts != info.experts {
            throw ClusterError.workerFailed(worker: info.name, reason: "restarted with a different shard")
        }
        return links[index]!
    }

    /// Sends a frame to worker `index` and returns its reply; worker errors become
    /// `ClusterError`s naming the worker.
    public nonisolated func exchange(_ index: Int, _ frame: Frame) async throws -> Frame {
        let link = try await link(index)
        let reply: Frame
        do {
            reply = try await link.exchange(frame)
        } catch {
            throw ClusterError.workerUnavailable(worker: await label(index), reason: "\(error)")
        }
        if reply.kind == .error {
            let error = ErrorMessage(frame: reply)
            throw ClusterError.workerFailed(worker: await label(index), reason: "\(error.code): \(error.message)")
        }
        return reply
    }

    /// Round-trip time of a PING to worker `index`, in seconds.
    public nonisolated func ping(_ index: Int) async throws -> Double {
        let start = ContinuousClock.now
        _ = try await exchange(index, Heartbeat.frame(.ping, requestID: nextRequestID()))
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    public func closeAll() async {
        for link in links.values { await link.close() }
        links.removeAll()
    }
}
