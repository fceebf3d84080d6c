import ArgumentParser
import JindouCommandLine
import JindouNumerics
import JindouModel
import JindouServer
import JindouTransport
import JindouWire
import JindouWorker
import ServiceLifecycle

struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a shard of routed experts to a coordinator.",
        discussion: """
            Loads only its experts from a local copy of the checkpoint, or, with --cache-dir instead of
            --model, fetches exactly its experts' bytes from the coordinator (which serves its model's
            files with --token-file or --serve-model-files yes), verified by SHA-256, kept in the cache
            directory, resumed after an interruption and re-verified at every start.
            With --join the worker registers with a coordinator, heartbeats, and holds whatever experts the
            coordinator assigns (it starts with none unless --experts is given).
            --experts: 'all', 'contiguous:I/N' or 'round-robin:I/N' (this worker is number I of N, from 0,
            matching the coordinator's --placement contiguous|round-robin), or ranges like '0-31,40'
            (those experts of every MoE layer). With --placement FILE the worker hosts what the file
            assigns to its --name.
            Examples:
              jindoud worker --model /models/qwen3-30b --join http://10.0.0.1:8080 --listen 0.0.0.0:7070 --name box-0
              jindoud worker --model /models/qwen3-30b --listen 0.0.0.0:7070 --experts contiguous:0/3 --name box-0
              jindoud worker --cache-dir /var/cache/jindou --join http://10.0.0.1:8080 --token-file /etc/jindou/token --name box-1
            """
    )

    @Option(help: "Checkpoint directory (config.json + safetensors) or GGUF file, a local copy.")
    var model: String?

    @Option(name: .customLong("cache-dir"), help: "No local copy: fetch this worker's experts from the coordinator into this directory (instead of --model).")
    var cacheDir: String?

    @Option(name: .customLong("fetch-rate"), help: "Most bytes per second fetched with --cache-dir, e.g. 100MB (default: unlimited).")
    var fetchRate: String?

    @Option(name: .customLong("fetch-from"), help: "URL of the node serving the model's files for --cache-dir (default: the --join URL).")
    var fetchFrom: String?

    @Option(help: "Address to accept coordinator connections on (port 0 picks a free port).")
    var listen: Endpoint = Endpoint(host: "0.0.0.0", port: 7070)

    @Option(help: "Experts to host: all | contiguous:I/N | round-robin:I/N | ranges like 0-31,40 (default: all, or none with --join).")
    var experts: String?

    @Option(help: "Coordinator URL to join (e.g. http://10.0.0.1:8080).")
    var join: String?

    @Option(help: "Address the coordinator should dial, host:port (default: the --listen address).")
    var advertise: Endpoint?

    @Option(name: .customLong("memory-limit"), help: "Memory offered for experts, e.g. 48GiB (default: available memory).")
    var memoryLimit: String?

    @OptionGroup var secret: SecretOptions
    @OptionGroup var tls: TLSOptions

    @Option(help: "A placement file; host what it assigns to --name.")
    var placement: String?

    @Option(help: "This worker's name (default: hostname:port).")
    var name: String?

    @Option(name: .customLong("max-payload-mb"), help: "Largest frame payload accepted, in MiB.")
    var maxPayloadMB: Int = 1024

    @Option(name: .customLong("expert-format"),
            help: "Re-encode the experts this worker holds after loading: a GGUF block format Jindou encodes, e.g. q8_0, q6_k, q4_k, iq4_xs (default: the checkpoint's dtype).")
    var expertFormat: String?

    @Option(help: "What a coordinator may move the data link to: auto (shared memory from this host, RDMA when this host has an active device), shm or rdma (only that; rdma refuses to start without a device), tcp (neither).")
    var transport: TransportChoice = .auto

    @Option(name: .customLong("handshake-timeout"),
            help: "Seconds a new connection has to send its HELLO before it is closed (0, the default: no limit).")
    var handshakeTimeout: Double = 0

    @Option(help: "Address for the worker's HTTP port: GET /health, /ready (shard mapped, joined) and /metrics, e.g. 0.0.0.0:7071 (default: none).")
    var http: String?

    @Option(name: .customLong("serve-model-files"),
            help: "With --http and --model: serve the checkpoint's files to workers without a copy (--fetch-from this worker's http URL): auto (only when --token-file or mutual TLS protects them), yes, no.")
    var serveModelFiles: String = "auto"

    @Option(name: .customLong("rdma-device"), help: "RDMA device for --transport rdma|auto, e.g. mlx5_0 or rxe0 (default: the first with an active port).")
    var rdmaDevice: String?

    @OptionGroup var daemon: DaemonOptions

    func validate() throws {
        if let http, Endpoint(http) == nil { throw ValidationError("--http: expected host:port, e.g. 0.0.0.0:7071") }
        guard ["auto", "yes", "no"].contains(serveModelFiles) else { throw ValidationError("--serve-model-files: auto, yes or no") }
        if let expertFormat, !(BlockFormat(rawValue: expertFormat.lowercased())?.canQuantize ?? false) {
            throw ValidationError("--expert-format must be a block format Jindou encodes: \(BlockFormat.allCases.filter(\.canQuantize).map(\.rawValue).joined(separator: ", "))")
        }
        if placement != nil && name == nil { throw ValidationError("--placement needs --name (the worker's name in the file)") }
        if let memoryLimit, parseByteSize(memoryLimit) == nil { throw ValidationError("--memory-limit: e.g. 48GiB, 512MB or bytes") }
        guard maxPayloadMB > 0 else { throw ValidationError("--max-payload-mb must be positive") }
        switch (model, cacheDir) {
        case (nil, nil): throw ValidationError("give --model (a local copy of the checkpoint) or --cache-dir (fetch the experts from the coordinator)")
        case (_?, _?): throw ValidationError("give --model or --cache-dir, not both")
        case (nil, _?):
            guard fetchFrom ?? join != nil else { throw ValidationError("--cache-dir needs --join (or --fetch-from), the node to fetch the weights from") }
        case (_?, nil):
            guard fetchRate == nil && fetchFrom == nil else { throw ValidationError("--fetch-rate and --fetch-from go with --cache-dir") }
        }
        if let fetchRate, (parseByteSize(fetchRate) ?? 0) == 0 { throw ValidationError("--fetch-rate: bytes per second, e.g. 100MB") }
    }

    func run() async throws {
        let logger = daemon.bootstrapLogging(label: "jindou.worker")
        _ = metricsRegistry  // bootstrap metrics before the worker creates its counters
        let service: WorkerService
        let httpApplication: (any Service)?
        do {
            var options = WorkerService.Options(modelDirectory: model ?? "", listen: listen, expertSpec: experts, placementFile: placement,
                               name: name, join: join, advertise: advertise, secret: try secret.load(logger: logger), tls: tls.node,
                               memoryBytes: memoryLimit.flatMap(parseByteSize),
                               maximumPayloadLength: maxPayloadMB << 20, prefault: !daemon.noPrefault,
                               expertFormat: expertFormat.flatMap { BlockFormat(rawValue: $0.lowercased()) }, transport: transport,
                               rdmaDevice: rdmaDevice)
            options.handshakeTimeoutSeconds = handshakeTimeout
            if let cacheDir, let from = fetchFrom ?? join {
                options.fetch = .init(cacheDirectory: cacheDir, from: from, bytesPerSecond: fetchRate.flatMap(parseByteSize).map { Double($0) })
            }
            service = try await WorkerService(options: options, logger: logger)
            let authenticated = options.secret != nil || tls.node != nil
            let modelFiles: ModelFileServer? = if let model, http != nil, serveModelFiles == "yes" || (serveModelFiles == "auto" && authenticated) {
                try ModelFileServer(source: try openWeightSource(model))
            } else {
                nil
            }
            httpApplication = try http.map { address in
                try WorkerHTTP.application(state: service.state, secret: options.secret, tls: tls.node, metrics: metricsRegistry,
                                           modelFiles: modelFiles, listen: Endpoint(address)!, logger: logger)
            }
        } catch {
            throw DaemonError(error)
        }
        announceReadyLine(service.url)
        let group = ServiceGroup(services: [service] + (httpApplication.map { [$0] } ?? []),
                                 gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}

/// One readable line at the edge.
struct DaemonError: Error, CustomStringConvertible {
    let description: String
    init(_ error: Error) { description = "\(error)" }
}

import Foundation

func announceReadyLine(_ url: String) {
    FileHandle.standardOutput.write(Data("ready \(url)\n".utf8))
}
