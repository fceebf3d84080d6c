import ArgumentParser
import Foundation
import Logging

/// `jindoud`: the Jindou daemons. Each runs in the foreground, logs to stderr, prints one
/// `ready <url>` line on stdout when it accepts work, and exits cleanly on SIGINT/SIGTERM.
@main
struct Jindoud: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jindoud",
        abstract: "Jindou daemons: a coordinator, expert workers, or a whole local cluster.",
        version: JindouRelease.description,
        subcommands: [Worker.self, Coordinator.self, Local.self]
    )

    /// Flags may also come from `--config FILE` and `JINDOU_<FLAG>` variables (FlagConfiguration).
    static func main() async {
        raiseOpenFileLimit()
        switch FlagConfiguration.arguments(root: Jindoud.self, commandLine: Array(CommandLine.arguments.dropFirst())) {
        case .success(let arguments): await main(arguments)
        case .failure(let code): exit(withError: code)
        }
    }
}

/// Raises the soft limit on open files to the hard one, as servers do (Go's runtime does it
/// at start): every connection, every sequence's KV memfd and every kept prefix holds one.
func raiseOpenFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

/// Flags every daemon shares.
struct DaemonOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "YAML file of flags: long flag names without `--` as keys (a list for a repeatable flag, true/false for a switch); JINDOU_CONFIG also names it.",
        discussion: "JINDOU_<FLAG> environment variables (e.g. JINDOU_MAX_MODEL_LEN) override the file; command-line flags override both."))
    var config: String?

    @Flag(name: .customLong("print-config"), help: "Print the effective configuration (command line, environment, file, defaults) as YAML and exit.")
    var printConfig = false

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Flag(name: .customLong("no-prefault"), help: "Do not read every weight page at start (faster start, slower first request).")
    var noPrefault = false

    @Option(help: "Threads the numeric kernels use (default: the cores this process may use; JINDOU_THREADS).")
    var threads: Int?

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
        if let threads, threads < 1 { throw ValidationError("--threads must be ≥ 1") }
    }

    /// Logs go to stderr; stdout carries only the `ready` line. Also applies `--threads`
    /// (before any kernel runs; child processes of `jindoud local` inherit it).
    func bootstrapLogging(label: String) -> Logger {
        if let threads { setenv("JINDOU_THREADS", String(threads), 1) }
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { name in
            var handler = StreamLogHandler.standardError(label: name)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}

/// Parses `host:port` for ArgumentParser.
import JindouCommandLine
import JindouCoordinator
import JindouModel
import JindouServer
import JindouServing
import JindouTransport
import JindouWire
import Foundation
import Metrics
import NIOCore
import JindouOutputParsing
import Prometheus

/// Flags for the cluster secret.
struct SecretOptions: ParsableArguments {
    @Option(name: .customLong("token-file"), help: "File holding the cluster secret; node links and the admin API then require it.")
    var tokenFile: String?

    func load(logger: Logger) throws -> ClusterSecret? {
        guard let tokenFile else { return nil }
        let secret = try ClusterSecret(contentsOfFile: tokenFile)
        if let attributes = try? FileManager.default.attributesOfItem(atPath: tokenFile),
           let mode = attributes[.posixPermissions] as? Int, mode & 0o077 != 0 {
            logger.warning("the cluster secret file is readable by other users; chmod 600 it", metadata: ["file": "\(tokenFile)"])
        }
        return secret
    }
}

/// Serving flags shared by `coordinator` and `local`.
struct ServingOptions: ParsableArguments {
    @Option(name: .customLong("served-model-name"), help: "The model name clients send (default: the model directory's name).")
    var servedModelName: String?

    @Option(name: .customLong("max-model-len"), help: "Most prompt + completion tokens per request (default: the model's max_position_embeddings).")
    var maxModelLength: Int?

    @Option(name: .customLong("max-batch-tokens"), help: "Most tokens per decode/prefill step (longer prompts are prefilled in chunks).")
    var maxBatchTokens: Int = 512

    @Option(name: .customLong("max-sequences"), help: "Most requests decoding at once.")
    var maxSequences: Int = 64

    @Option(name: .customLong("kv-cache"), help: "KV-cache memory for running requests, e.g. 4GiB; requests wait when it is full.")
    var kvCache: String = "4GiB"

    @Option(name: .customLong("max-queued"), help: "Requests that may wait for admission; more get HTTP 429.")
    var maxQueued: Int = 256

    @Option(name: .customLong("max-queued-per-client"),
            help: "Requests one client (peer IP address) may have waiting for admission; more of its requests get HTTP 429 (0: no per-client limit).")
    var maxQueuedPerClient: Int = 64

    @Option(name: .customLong("idle-timeout"),
            help: "Seconds an HTTP connection may sit without a request in progress — including a request head that never completes — before it is closed (0: never).")
    var idleTimeout: Double = 60

    @Option(name: .customLong("max-connections"), help: "HTTP connections served at once; more wait to be accepted (0: no limit).")
    var maxConnections: Int = 4096

    /// The HTTP edge limits these flags set.
    var connectionLimits: ConnectionLimits {
        ConnectionLimits(idleTimeout: idleTimeout > 0 ? .milliseconds(Int64(idleTimeout * 1000)) : nil,
                         maximumConnections: maxConnections > 0 ? maxConnections : nil)
    }

    @Option(name: .customLong("serve-model-files"),
            help: "Serve the model's files to workers started without a local copy (`jindoud worker --cache-dir`): auto (when --token-file or mutual TLS protects the API), yes, no.")
    var serveModelFiles: String = "auto"

    /// The model-file routes, if they are on (`--serve-model-files`).
    func modelFiles(model: String, authenticated: Bool, logger: Logger) throws -> ModelFileServer? {
        switch serveModelFiles {
        case "no": return nil
        case "auto" where !authenticated: return nil
        default:
            let files = try ModelFileServer(source: try openWeightSource(model))
            logger.info("serving the model's files to workers without a local copy",
                        metadata: ["files": "\(files.manifest.files.count)", "fingerprint": "\(files.manifest.fingerprint.prefix(12))"])
            return files
        }
    }

    @Option(name: .customLong("allow-local-images"),
            help: "Let chat requests name image files inside this directory (default: only data: URLs; remote URLs are never fetched).")
    var allowLocalImages: String?

    @Option(name: .customLong("max-image-bytes"), help: "Largest encoded image a request may send, e.g. 32MiB.")
    var maxImageBytes: String = "32MiB"

    @Option(name: .customLong("max-request-bytes"), help: "Largest HTTP request body, e.g. 64MiB; larger ones get 413.")
    var maxRequestBytes: String = "64MiB"

    @Option(help: "Speculative decoding: off, ngram (prompt-lookup drafts) or mtp (the checkpoint's MTP layer, mapped on the coordinator); drafts are verified in one step and greedy output is unchanged.")
    var speculative: String = "off"

    @Option(name: .customLong("draft-tokens"), help: "With --speculative: most drafted tokens per sequence and step.")
    var draftTokens: Int = 4

    @Option(name: .customLong("micro-batches"),
            help: "Split each step into overlapping micro-batches: 1, 2 or auto (2 when experts are remote and ≥ \(MicroBatching.autoMinimumSequences) sequences run).")
    var microBatches: String = "auto"

    @Flag(name: .customLong("no-prefix-cache"),
          help: "Do not keep finished requests' KV caches for later prompts that share their prefix (kept by default, within --kv-cache).")
    var noPrefixCache = false

    @Option(name: .customLong("tool-call-parser"),
            help: "How tool calls are read out of chat answers: auto (from the chat template), none, or one of \(OutputFormat.toolCallParsers.joined(separator: ", ")) (vLLM's names).")
    var toolCallParser: String = "auto"

    @Option(name: .customLong("reasoning-parser"),
            help: "How reasoning is split from chat answers into reasoning_content: auto (when the chat template knows <think>, or gpt-oss's harmony channels), none, or one of \(OutputFormat.reasoningParsers.joined(separator: ", ")).")
    var reasoningParser: String = "auto"

    @Option(name: .customLong("ready-timeout"),
            help: "Seconds a request waits for the cluster to serve every expert at startup before it gets 503.")
    var readyTimeout: Double = 60

    func validate() throws {
        guard parseByteSize(kvCache) != nil else { throw ValidationError("--kv-cache: e.g. 4GiB") }
        guard ["auto", "yes", "no"].contains(serveModelFiles) else { throw ValidationError("--serve-model-files must be auto, yes or no") }
        guard parseByteSize(maxImageBytes) != nil else { throw ValidationError("--max-image-bytes: e.g. 32MiB") }
        guard let requestBytes = parseByteSize(maxRequestBytes), requestBytes > 0, requestBytes <= UInt64(Int.max) else {
            throw ValidationError("--max-request-bytes: e.g. 64MiB")
        }
        guard readyTimeout >= 0, readyTimeout.isFinite else { throw ValidationError("--ready-timeout must be ≥ 0 seconds") }
        guard SpeculationMode(rawValue: speculative) != nil else { throw ValidationError("--speculative must be off, ngram or mtp") }
        guard (1...64).contains(draftTokens) else { throw ValidationError("--draft-tokens must be in 1…64") }
        guard MicroBatching(microBatches) != nil else { throw ValidationError("--micro-batches must be auto, 1 or 2") }
        guard maxBatchTokens > 0, maxSequences > 0, maxQueued >= 0 else { throw ValidationError("batch limits must be positive") }
        guard maxQueuedPerClient >= 0, maxConnections >= 0 else { throw ValidationError("--max-queued-per-client and --max-connections must be ≥ 0") }
        guard idleTimeout >= 0, idleTimeout.isFinite else { throw ValidationError("--idle-timeout must be ≥ 0 seconds") }
        if let maxModelLength, maxModelLength < 2 { throw ValidationError("--max-model-len must be at least 2") }
        guard ["auto", "none"].contains(toolCallParser) || OutputFormat.toolCallParsers.contains(toolCallParser) else {
            throw ValidationError("--tool-call-parser must be auto, none or one of \(OutputFormat.toolCallParsers.joined(separator: ", "))")
        }
        guard ["auto", "none"].contains(reasoningParser) || OutputFormat.reasoningParsers.contains(reasoningParser) else {
            throw ValidationError("--reasoning-parser must be auto, none or one of \(OutputFormat.reasoningParsers.joined(separator: ", "))")
        }
    }

    /// The serving context for an engine over the checkpoint in `model`; requests wait for
    /// `controller`'s first complete placement (if any) up to `--ready-timeout`.
    func context(engine: InferenceEngine, model: String, controller: ClusterController?) throws -> ServingContext {
        let text = try ServingText(directory: model, description: engine.description)
        let scheduler = BatchScheduler(engine: engine, options: .init(
            maximumStepTokens: maxBatchTokens, maximumSequences: maxSequences,
            kvCacheBudgetBytes: Int(parseByteSize(kvCache)!), maximumQueued: maxQueued,
            speculation: SpeculationOptions(mode: SpeculationMode(rawValue: speculative)!, draftTokens: draftTokens),
            microBatches: MicroBatching(microBatches)!, prefixCaching: !noPrefixCache,
            maximumQueuedPerClient: maxQueuedPerClient > 0 ? maxQueuedPerClient : nil,
            maximumModelLength: maxModelLength ?? engine.description.maxPositionEmbeddings))
        let name = servedModelName ?? URL(fileURLWithPath: model).standardizedFileURL.lastPathComponent
        return ServingContext(engine: engine, scheduler: scheduler, text: text, modelName: name,
                              maximumModelLength: maxModelLength ?? engine.description.maxPositionEmbeddings,
                              vision: try ServingVision(directory: model, description: engine.description, text: text),
                              imagePolicy: ImageSourcePolicy(localDirectory: allowLocalImages,
                                                             maxBytes: Int(parseByteSize(maxImageBytes)!)),
                              maximumRequestBytes: Int(parseByteSize(maxRequestBytes)!),
                              readiness: controller.map { controller in
                                  ReadinessGate(startupWait: .milliseconds(Int64(readyTimeout * 1000))) { await controller.readiness() }
                              } ?? .always,
                              outputFormat: try OutputFormat.selected(toolCallParser: toolCallParser, reasoningParser: reasoningParser,
                                                                      chatTemplate: text.chatTemplate?.source))
    }
}

/// Prometheus metrics for the process (`GET /metrics`).
let metricsRegistry: PrometheusCollectorRegistry = {
    let registry = PrometheusCollectorRegistry()
    var factory = PrometheusMetricsFactory(registry: registry)
    // Dispatch round trips and expert computations take tens of microseconds to milliseconds,
    // time to first token up to a minute: the library's default buckets start at 5 ms.
    factory.defaultDurationHistogramBuckets = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
    ]
    MetricsSystem.bootstrap(factory)
    return registry
}()
