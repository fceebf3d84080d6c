import Foundation
import JindouAdmin
import JindouModel
import JindouNumerics
import JindouPlacement
import JindouTransport
import JindouWire
import Logging
import ServiceLifecycle

/// `jindoud worker`: loads only its experts from a local checkpoint copy and serves
/// dispatch/combine until SIGTERM/SIGINT. With `--join` it registers with a coordinator,
/// heartbeats, and holds whatever experts the coordinator assigns.
public struct WorkerService: Service {
    public struct Options: Sendable {
        public var modelDirectory: String
        public var listen: Endpoint
        /// `--experts` (see `expertsForSpec`); nil = none when joining, else all.
        public var expertSpec: String?
        public var placementFile: String?
        public var name: String?
        public var join: String?
        /// The address the coordinator should dial (default: the bound address).
        public var advertise: Endpoint?
        public var secret: ClusterSecret?
        /// Mutual TLS for the data plane and for joining (see `NodeTLS`).
        public var tls: NodeTLS?
        /// Bytes offered for experts (default: MemAvailable at start).
        public var memoryBytes: UInt64?
        public var maximumPayloadLength: Int
        public var prefault: Bool
        /// `--expert-format`: re-encode the experts it holds (Q8_0, Q4_K) after loading.
        public var expertFormat: BlockFormat?
        /// What the worker accepts beside TCP: `auto` shared memory from a coordinator on
        /// this host and RDMA when it has an active device; `shm` / `rdma` only that one
        /// (`rdma` refuses to start without a device); `tcp` neither.
        public var transport: TransportChoice
        /// `--rdma-device` (default: the first with an active port).
        public var rdmaDevice: String?
        /// `--handshake-timeout`: a connection must send HELLO this soon after it is accepted.
        public var handshakeTimeoutSeconds: Double = 0
        /// `--cache-dir`: no local checkpoint; fetch the experts' bytes (`modelDirectory` is unused).
        public var fetch: FetchOptions?

        public init(modelDirectory: String, listen: Endpoint, expertSpec: String? = nil, placementFile: String? = nil,
                    name: String? = nil, join: String? = nil, advertise: Endpoint? = nil, secret: ClusterSecret? = nil,
                    tls: NodeTLS? = nil, memoryBytes: UInt64? = nil, maximumPayloadLength: Int = WireProtocol.defaultMaximumPayloadLength,
                    prefault: Bool = true, expertFormat: BlockFormat? = nil, transport: TransportChoice = .auto,
                    rdmaDevice: String? = nil) {
            self.transport = transport
            self.rdmaDevice = rdmaDevice
            self.expertFormat = expertFormat
            self.modelDirectory = modelDirectory
            self.listen = listen
            self.expertSpec = expertSpec
            self.placementFile = placementFile
            self.name = name
            self.join = join
            self.advertise = advertise
            self.secret = secret
            self.tls = tls
            self.memoryBytes = memoryBytes
            self.maximumPayloadLength = maximumPayloadLength
            self.prefault = prefault
        }
    }

    /// Where a worker without a local checkpoint gets its weights.
    public struct FetchOptions: Sendable {
        /// The directory that keeps fetched weights across restarts.
        public var cacheDirectory: String
        /// The node serving the model's files (the coordinator: `--join`).
        public var from: String
        /// `--fetch-rate` (nil: unlimited).
        public var bytesPerSecond: Double?
        /// Largest piece asked for at once.
        public var chunkBytes: Int
        public init(cacheDirectory: String, from: String, bytesPerSecond: Double? = nil, chunkBytes: Int = 4 << 20) {
            self.cacheDirectory = cacheDirectory
            self.from = from
            self.bytesPerSecond = bytesPerSecond
            self.chunkBytes = chunkBytes
        }
    }

    public let state: WorkerState
    public let server: FrameServer
    let options: Options
    let logger: Logger

    /// Loads the initial shard and binds the listening socket; `ready` is printed by the caller.
    public init(options: Options, logger: Logger) async throws {
        // --transport rdma without a usable device fails here, before anything is loaded.
        let rdma: RDMADevices.Device? = switch options.transport {
        case .rdma: try RDMADevices.require(named: options.rdmaDevice)
        case .auto: try? RDMADevices.require(named: options.rdmaDevice)
        case .tcp, .shm: nil
        }
        let checkpoint: any WeightSource
        if let fetch = options.fetch {
            let client = try AdminClient(fetch.from, token: options.secret?.token, timeoutSeconds: 120, tls: options.tls)
            checkpoint = try await FetchedWeightSource.open(cacheDirectory: fetch.cacheDirectory, client: client,
                                                            bytesPerSecond: fetch.bytesPerSecond, chunkBytes: fetch.chunkBytes, logger: logger)
        } else {
            checkpoint = try openWeightSource(options.modelDirectory)
        }
        let description = try checkpoint.modelDescription()
        let server = try await FrameServer(endpoint: options.listen, maximumPayloadLength: options.maximumPayloadLength,
                                           tls: try options.tls?.serverContext(),
                                           handshakeTimeout: options.handshakeTimeoutSeconds > 0
                                               ? .milliseconds(Int64(options.handshakeTimeoutSeconds * 1000)) : nil,
                                           logger: logger)
        let bound = server.boundEndpoint ?? options.listen
        let name = options.name ?? "\(ProcessInfo.processInfo.hostName):\(bound.port)"
        let keys: [ExpertKey]
        if let file = options.placementFile {
            keys = try PlacementFile.load(path: file, description: description).experts(ofWorker: name)
        } else if let spec = options.expertSpec {
            keys = try expertsForSpec(spec, description: description)
        } else {
            keys = options.join == nil ? description.allExperts : []
        }
        if let fetched = checkpoint as? FetchedWeightSource { try await fetched.ensure(keys, description: description) }
        let store = try ShardStore(description: description, checkpoint: checkpoint, initial: keys, prefault: options.prefault,
                                   expertFormat: options.expertFormat)
        let fingerprint = try checkpoint.fingerprint()
        state = WorkerState(name: name, description: description, fingerprint: fingerprint, store: store,
                            secret: options.secret, cores: ProcessInfo.processInfo.activeProcessorCount,
                            memoryBytes: options.memoryBytes ?? Self.availableMemory(),
                            acceptsSharedMemory: options.transport == .auto || options.transport == .shm,
                            acceptsRDMA: rdma != nil, rdmaDevice: rdma?.name)
        self.server = server
        self.options = options
        self.logger = logger
        state.recordShard()
        logger.info("worker loaded", metadata: [
            "name": "\(name)", "experts": "\(keys.count)", "expert_bytes": "\(store.shard.byteCount)", "listen": "\(bound)",
            "kernels": "\(KernelDispatch.active.name)", "rdma": "\(rdma.map { "\($0.name) port \($0.port ?? 0)" } ?? "none")",
        ])
    }

    /// `tcp://host:port` actually bound.
    public var url: String { "\(options.tls == nil ? "tcp" : "tls")://\(server.boundEndpoint ?? Endpoint(host: "?", port: 0))" }

    /// The address to give the coordinator.
    var advertisedAddress: String {
        if let advertise = options.advertise { return advertise.description }
        let bound = server.boundEndpoint ?? options.listen
        if bound.host == "0.0.0.0" || bound.host == "::" {
            return Endpoint(host: ProcessInfo.processInfo.hostName, port: bound.port).description
        }
        return bound.description
    }

    public func run() async throws {
        let state = self.state
        let logger = self.logger
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { try await server.run { WorkerSession(state: state, logger: logger) } }
                    if let join = options.join { group.addTask { await joinAndHeartbeat(join) } }
                }
            }
        } catch is CancellationError {
            // Graceful shutdown: connections were cancelled, nothing to report.
        }
        logger.info("worker stopped", metadata: ["name": "\(state.name)"])
    }

    /// Registers with the coordinator and heartbeats until cancelled; re-joins whenever the
    /// coordinator does not know this worker (e.g. it restarted without its state), and
    /// keeps retrying with backoff while it is unreachable.
    func joinAndHeartbeat(_ url: String) async {
        guard let client = try? AdminClient(url, token: state.secret?.token, timeoutSeconds: 10, tls: options.tls) else {
            logger.error("bad --join URL", metadata: ["url": "\(url)"])
            return
        }
        let join = JoinRequest(name: state.name, address: advertisedAddress, cores: state.cores,
                               memoryBytes: state.memoryBytes, fingerprint: state.fingerprint)
        var joined = false
        state.recordContact(joined: false, error: "joining")
        var interval = 1.0
        var backoff = 0.25
        while !Task.isCancelled {
            do {
                if !joined {
                    var join = join
                    join.fetch = state.fetchStatus
                    let response = try await client.post("v1/admin/workers/join", join, as: JoinResponse.self)
                    joined = true
                    state.recordContact(joined: true)
                    interval = max(0.05, response.heartbeatSeconds)
                    logger.info("joined the coordinator", metadata: ["coordinator": "\(url)", "state": "\(response.state)"])
                } else {
                    let heartbeat = HeartbeatRequest(name: state.name, address: join.address, fetch: state.fetchStatus)
                    _ = try await client.send("POST", "v1/admin/workers/heartbeat", body: try JSONEncoder().encode(heartbeat))
                    state.recordContact(joined: true)
                }
                backoff = 0.25
                try await Task.sleep(for: .seconds(interval))
            } catch is CancellationError {
                return
            } catch AdminClientError.status(let code, let message) where code == 404 {
                logger.notice("coordinator does not know this worker; joining again", metadata: ["reason": "\(message)"])
                joined = false
                state.recordContact(joined: false, error: "joining again: \(message)")
            } catch {
                state.recordContact(joined: false, error: "\(error)")
                if joined { logger.warning("heartbeat failed", metadata: ["error": "\(error)"]) }
                else { logger.warning("join failed", metadata: ["error": "\(error)"]) }
                if case AdminClientError.status(let code, _)? = error as? AdminClientError, code == 401 || code == 409 {
                    logger.error("the coordinator refused this worker; not retrying quickly", metadata: ["error": "\(error)"])
                    backoff = 30
                }
                try? await Task.sleep(for: .seconds(backoff))
                backoff = min(backoff * 2, 30)
            }
        }
    }

    /// MemAvailable from /proc/meminfo.
    static func availableMemory() -> UInt64 {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
              let kilobytes = UInt64(line.split(separator: " ").dropFirst().first ?? "") else {
            return ProcessInfo.processInfo.physicalMemory
        }
        return kilobytes * 1024
    }
}
