import Foundation
import JindouModel
import JindouTransport
import JindouWire
import Logging
import Synchronization

/// Errors of the cluster, naming the worker or expert at fault.
public enum ClusterError: Error, Equatable, CustomStringConvertible {
    case workerUnavailable(worker: String, reason: String)
    case workerRefused(worker: String, reason: String)
    case workerFailed(worker: String, reason: String)
    case badReply(worker: String, reason: String)
    case expertUnavailable(layer: Int, expert: Int)
    case unknownWorker(String)
    case rejected(String)
    /// The request is well formed but the cluster's state refuses it (pinned placement, nothing
    /// to drain to, no load measured): HTTP 409.
    case conflict(String)

    public var description: String {
        switch self {
        case .workerUnavailable(let worker, let reason): "worker \(worker) is unavailable: \(reason)"
        case .workerRefused(let worker, let reason): "worker \(worker) refused the handshake: \(reason)"
        case .workerFailed(let worker, let reason): "worker \(worker) failed: \(reason)"
        case .badReply(let worker, let reason): "worker \(worker) sent a bad reply: \(reason)"
        case .expertUnavailable(let layer, let expert):
            "expert \(expert) of layer \(layer) is not served: no live worker hosts it"
        case .unknownWorker(let name): "no worker named '\(name)'"
        case .rejected(let reason), .conflict(let reason): reason
        }
    }
}

/// What a worker said at its handshake.
public struct WorkerInfo: Sendable, Equatable {
    public let endpoint: Endpoint
    public let name: String
    public let experts: [ExpertKey]
    public let expertBytes: UInt64
    public let cores: Int
    public let memoryBytes: UInt64
    public let shardVersion: UInt64
    /// What carries this worker's data link: "tcp", "tls", "shm" or "rdma".
    public var transport: String = "tcp"
}

/// Connections to workers, by worker name: a data link for dispatches and a control link
/// for shard updates (so loading experts never delays a dispatch). A dead link is
/// re-established, with a fresh authenticated handshake, the next time it is needed.
public actor WorkerPool {
    struct Entry {
        var endpoint: Endpoint
        var data: (any WorkerLink)?
        var control: (any WorkerLink)?
        var info: WorkerInfo?
    }

    public let fingerprint: String
    public let coordinatorName: String
    public let secret: ClusterSecret?
    private let tls: NodeTLS?
    public let transport: TransportChoice
    /// The RDMA device data links may use (`auto` with an active device, or `rdma`).
    public nonisolated let rdma: RDMADevices.Device?
    private let timeoutSeconds: Double
    private let logger: Logger
    private var entries: [String: Entry] = [:]
    private let requestIDs = Atomic<UInt64>(1)

    public init(fingerprint: String, coordinatorName: String = "coordinator", secret: ClusterSecret? = nil,
                tls: NodeTLS? = nil, transport: TransportChoice = .tcp, rdmaDevice: String? = nil, timeoutSeconds: Double = 120,
                logger: Logger) throws(RDMAError) {
        // --transport rdma without a usable device fails at start, naming what is missing.
        rdma = switch transport {
        case .rdma: try RDMADevices.require(named: rdmaDevice)
        case .auto: try? RDMADevices.require(named: rdmaDevice)
        case .tcp, .shm: nil
        }
        self.transport = transport
        self.fingerprint = fingerprint
        self.coordinatorName = coordinatorName
        self.secret = secret
        self.tls = tls
        self.timeoutSeconds = timeoutSeconds
        self.logger = logger
    }

    /// A fresh request id (unique per coordinator process).
    public nonisolated func nextRequestID() -> UInt64 {
        requestIDs.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    /// Connects to `endpoint`, shakes hands and registers the worker under the name it gives.
    public func add(_ endpoint: Endpoint) async throws -> WorkerInfo {
        let (link, info) = try await handshake(endpoint)
        if let old = entries[info.name] {
            await old.data?.close()
            await old.control?.close()
        }
        entries[info.name] = Entry(endpoint: endpoint, data: link, control: nil, info: info)
        return info
    }

    /// Registers (or moves) a worker known by name; links connect on first use.
    public func register(name: String, endpoint: Endpoint) async {
        if let old = entries[name] {
            if old.endpoint == endpoint { return }
            await old.data?.close()
            await old.control?.close()
        }
        entries[name] = Entry(endpoint: endpoint, data: nil, control: nil, info: entries[name]?.info)
    }

    public func remove(_ name: String) async {
        guard let entry = entries.removeValue(forKey: name) else { return }
        await entry.data?.close()
        await entry.control?.close()
    }

    /// What worker `name` said at its last handshake.
    public func info(_ name: String) -> WorkerInfo? { entries[name]?.info }
    public var workers: [WorkerInfo] { entries.values.compactMap(\.info).sorted { $0.name < $1.name } }
    public func endpoint(_ name: String) -> Endpoint? { entries[name]?.endpoint }
    /// Each connected worker's data-link transport ("tcp", "tls", "shm", "rdma").
    public func transports() -> [String: String] {
        entries.compactMapValues { entry in entry.data.flatMap { $0.isActive ? $0.transport : nil } }
    }

    private func handshake(_ endpoint: Endpoint, control: Bool = false) async throws -> (any WorkerLink, WorkerInfo) {
        let link: TCPWorkerLink
        do {
            link = try await TCPWorkerLink.connect(to: endpoint, timeoutSeconds: timeoutSeconds, tls: try tls?.clientContext())
        } catch {
            throw ClusterError.workerUnavailable(worker: endpoint.description, reason: "\(error)")
        }
        let hello = HelloMessage(modelFingerprint: fingerprint, coordinatorName: coordinatorName, secret: secret)
        let welcome: WelcomeMessage
        do {
            welcome = try WelcomeMessage(frame: try await link.exchange(hello.frame(requestID: nextRequestID())))
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
                reason: WireError.modelFingerprintMismatch(ours: fingerprint, theirs: welcome.modelFingerprint.peerText(limit: 64)).description)
        }
        if let secret {
            let expected = secret.welcomeTag(nonce: hello.nonce, fingerprint: fingerprint, workerName: welcome.workerName)
            guard ClusterSecret.matches(expected, welcome.authTag) else {
                await link.close()
                logger.error("refused worker without the cluster secret", metadata: ["address": "\(endpoint)"])
                throw ClusterError.workerRefused(worker: endpoint.description, reason: "its WELCOME is not signed with this cluster's secret")
            }
        }
        var info = WorkerInfo(endpoint: endpoint, name: welcome.workerName,
                              experts: welcome.experts.map { ExpertKey(layer: $0.layer, expert: $0.expert) }.sorted(),
                              expertBytes: welcome.expertBytes, cores: welcome.cores, memoryBytes: welcome.memoryBytes,
                              shardVersion: welcome.shardVersion)
        // Shard updates stay on TCP: they are rare, and shared memory is for the data path.
        let data = control ? link : try await chooseTransport(link, endpoint: endpoint, welcome: welcome)
        info.transport = data.transport
        return (data, info)
    }

    /// The data link for a worker that has just shaken hands on `link`: the same TCP
    /// connection, or shared memory or RDMA negotiated over it (`TransportChoice`).
    private func chooseTransport(_ link: TCPWorkerLink, endpoint: Endpoint, welcome: WelcomeMessage) async throws -> any WorkerLink {
        let sameHost = HostIdentity.isThisHost(welcome.hostID) && LocalAddresses.contains(endpoint.host)
        func required(_ name: String, _ connect: () async throws -> any WorkerLink) async throws -> any WorkerLink {
            do {
                return try await connect()
            } catch {
                await link.close()
                throw ClusterError.workerUnavailable(worker: endpoint.description, reason: "--transport \(name): \(error)")
            }
        }
        switch transport {
        case .tcp:
            return link
        case .auto:
            if welcome.acceptsSharedMemory && sameHost {
                do {
                    return try await attachSharedMemory(link, endpoint: endpoint)
                } catch {
                    logger.notice("shared memory refused; using TCP", metadata: ["worker": "\(endpoint)", "reason": "\(error)"])
                }
            } else if welcome.acceptsRDMA, let rdma {
                do {
                    return try await connectRDMA(link, endpoint: endpoint, device: rdma)
                } catch {
                    logger.notice("RDMA failed; using TCP", metadata: ["worker": "\(endpoint)", "reason": "\(error)"])
                }
            }
            return link
        case .shm:
            return try await required("shm") {
                guard welcome.acceptsSharedMemory else { throw ClusterError.rejected("the worker does not accept shared memory (its --transport is tcp or rdma)") }
                guard HostIdentity.isThisHost(welcome.hostID) else { throw ClusterError.rejected("the worker runs on another host (boot id \(welcome.hostID.isEmpty ? "not given" : welcome.hostID))") }
                return try await attachSharedMemory(link, endpoint: endpoint)
            }
        case .rdma:
            return try await required("rdma") {
                guard welcome.acceptsRDMA else { throw ClusterError.rejected("the worker does not accept RDMA (no active device, or its --transport is tcp or shm)") }
                return try await connectRDMA(link, endpoint: endpoint, device: rdma!)
            }
        }
    }

    /// Opens a queue pair with its receives posted, sends its parameters over the
    /// authenticated connection and connects it to the worker's answer.
    private func connectRDMA(_ link: TCPWorkerLink, endpoint: Endpoint, device: RDMADevices.Device) async throws -> any WorkerLink {
        let channel = try RDMAChannel(device: device.name, ip: link.localIPAddress)
        let reply = try await link.exchange(channel.local.frame(.rdmaConnect, requestID: nextRequestID()))
        do {
            if reply.kind == .error { throw ErrorMessage(frame: reply).wireError }
            try channel.connect(to: RDMAConnectionParameters(frame: reply, kind: .rdmaAccept))
        } catch {
            channel.close()
            throw error
        }
        return ChannelWorkerLink(peer: endpoint.description, transport: "rdma", control: link, channel: channel, timeoutSeconds: timeoutSeconds)
    }

    /// Creates rings, asks the worker to map them over the authenticated connection, and
    /// unlinks their name once answered (so no other process can open them later).
    private func attachSharedMemory(_ link: TCPWorkerLink, endpoint: Endpoint) async throws -> any WorkerLink {
        let rings = try SharedMemoryChannel.create()
        defer { rings.unlink() }
        let reply = try await link.exchange(SharedMemoryAttachMessage(name: rings.name, ringBytes: rings.ringBytes).frame(requestID: nextRequestID()))
        guard reply.kind == .shmAttached else {
            rings.close()
            if reply.kind == .error { throw ErrorMessage(frame: reply).wireError }
            throw WireError.unexpectedMessage(kind: "\(reply.kind)", state: "where SHM_ATTACHED was expected")
        }
        return ChannelWorkerLink(peer: endpoint.description, transport: "shm", control: link, channel: rings, timeoutSeconds: timeoutSeconds)
    }

    /// A live link to worker `name` (the control link when `control`), reconnecting if needed.
    public func link(_ name: String, control: Bool = false) async throws -> any WorkerLink {
        guard var entry = entries[name] else { throw ClusterError.unknownWorker(name) }
        if let link = control ? entry.control : entry.data, link.isActive { return link }
        let (link, handshakeInfo) = try await handshake(entry.endpoint, control: control)
        var info = handshakeInfo
        if control, let known = entry.info { info.transport = known.transport }
        guard info.name == name else {
            await link.close()
            throw ClusterError.workerRefused(worker: name, reason: "the worker at \(entry.endpoint) is now called '\(info.name.peerText())'")
        }
        entry = entries[name] ?? entry
        if control { entry.control = link } else { entry.data = link }
        entry.info = info
        entries[name] = entry
        logger.info("worker connected", metadata: ["worker": "\(name)", "address": "\(entry.endpoint)", "control": "\(control)",
                                                   "transport": "\(link.transport)"])
        return link
    }

    /// Sends a frame to worker `name` and returns its reply; failures become
    /// `ClusterError`s naming the worker.
    public nonisolated func exchange(_ name: String, _ frame: Frame, control: Bool = false) async throws -> Frame {
        let link: any WorkerLink
        do {
            link = try await self.link(name, control: control)
        } catch let error as ClusterError {
            throw error
        } catch {
            throw ClusterError.workerUnavailable(worker: name, reason: "\(error)")
        }
        let reply: Frame
        do {
            reply = try await link.exchange(frame)
        } catch {
            throw ClusterError.workerUnavailable(worker: name, reason: "\(error)")
        }
        if reply.kind == .error {
            let error = ErrorMessage(frame: reply)
            // A worker without the experts it was routed is out of step with the placement
            // (restarted, or a shard update still on its way): like an unreachable one, it is
            // taken out of routing and the tokens go to another copy.
            if error.code == .expertNotHosted {
                throw ClusterError.workerUnavailable(worker: name, reason: "\(error.code): \(error.message)")
            }
            throw ClusterError.workerFailed(worker: name, reason: "\(error.code): \(error.message)")
        }
        return reply
    }

    /// Round-trip time of a PING to worker `name`, in seconds.
    public nonisolated func ping(_ name: String) async throws -> Double {
        let start = ContinuousClock.now
        _ = try await exchange(name, Heartbeat.frame(.ping, requestID: nextRequestID()))
        return (ContinuousClock.now - start).seconds
    }

    public func closeAll() async {
        for entry in entries.values {
            await entry.data?.close()
            await entry.control?.close()
        }
        for name in entries.keys {
            entries[name]?.data = nil
            entries[name]?.control = nil
        }
    }
}
