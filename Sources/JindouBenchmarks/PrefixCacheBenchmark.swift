import Foundation
import JindouModel
import JindouServing

/// Time to first token of a chat's second turn with and without the prefix cache: turn 1 is
/// a long prompt (a system prompt and a document) and its answer; turn 2 sends all of it
/// again plus a short question, as chat clients do. With the cache, turn 2 prefills only
/// what follows the cached blocks. Both schedulers run on one engine, rounds interleaved;
/// the greedy tokens of turn 2 must be equal with and without the cache.
public struct PrefixCacheBenchmark: Sendable {
    public struct Options: Sendable {
        public var model: String
        public var promptTokens: [Int]
        public var answerTokens: Int
        public var questionTokens: Int
        public var rounds: Int
        public init(model: String, promptTokens: [Int], answerTokens: Int = 16, questionTokens: Int = 24, rounds: Int = 3) {
            self.model = model
            self.promptTokens = promptTokens
            self.answerTokens = answerTokens
            self.questionTokens = questionTokens
            self.rounds = rounds
        }
    }

    public struct Row: Codable, Sendable {
        public var promptTokens: Int
        public var turnTwoTokens: Int
        public var cachedTokens: Int
        public var coldSeconds: Double
        public var warmSeconds: Double
        public var tokensEqual: Bool
        /// Bytes of turn 2's cache mapped from turn 1's store instead of copied, and the
        /// bytes the cached rows would take as a copy.
        public var sharedBytes: Int
        public var cachedRowBytes: Int
        public var speedup: Double { coldSeconds / warmSeconds }
    }

    public struct Report: Codable, Sendable {
        public var model: String
        public var architecture: String
        public var threads: Int
        public var rows: [Row]

        public var markdown: String {
            var lines = [
                "Time to first token of a chat's second turn (turn 1's prompt and answer sent again plus a new question), with the prefix cache and without (`--no-prefix-cache`), fastest of the rounds; \(architecture) `\(model)`, \(threads) threads, in-process scheduler.",
                "Shared: the part of the cached rows turn 2 maps copy-on-write from turn 1's pages rather than holding a copy (the rest, the last partial page of each layer's rows, is copied).",
                "", "| turn-1 prompt | turn-2 prompt | cached | TTFT without | TTFT with | ratio | same tokens | shared |", "|---|---|---|---|---|---|---|---|",
            ]
            for r in rows {
                let shared = String(format: "%.1f of %.1f MiB", Double(r.sharedBytes) / 1_048_576, Double(r.cachedRowBytes) / 1_048_576)
                lines.append("| \(r.promptTokens) | \(r.turnTwoTokens) | \(r.cachedTokens) | \(String(format: "%.0f", r.coldSeconds * 1000)) ms | \(String(format: "%.0f", r.warmSeconds * 1000)) ms | \(String(format: "%.1f", r.speedup))× | \(r.tokensEqual ? "yes" : "no") | \(shared) |")
            }
            return lines.joined(separator: "\n")
        }
    }

    public let options: Options
    public init(options: Options) { self.options = options }

    /// Seconds to the first token, the greedy tokens and the cached tokens of one request,
    /// and the bytes running requests shared at its first token.
    static func firstToken(_ scheduler: BatchScheduler, _ request: GenerationRequest) async throws -> (Double, [Int], Int, Int) {
        let start = ContinuousClock.now
        var first: Double?
        var tokens: [Int] = [], cached = 0, shared = 0
        for try await event in try await scheduler.submit(request) {
            switch event {
            case .token(let t):
                if first == nil {
                    first = (ContinuousClock.now - start).seconds
                    shared = await scheduler.prefixCacheUsage.sharedByRunning
                }
                tokens.append(t)
            case .cachedPrompt(let n): cached = n
            default: break
            }
        }
        return (first ?? 0, tokens, cached, shared)
    }

    public func run(log: @escaping @Sendable (String) -> Void) async throws -> Report {
        let engine = try InferenceEngine.load(directory: options.model, prefault: true)
        let vocabulary = engine.description.vocabularySize
        let context = engine.description.maxPositionEmbeddings
        var rows: [Row] = []
        for length in options.promptTokens {
            let prompt = (0..<length).map { ($0 * 7919 + 13) % vocabulary }
            let question = (0..<options.questionTokens).map { ($0 * 104729 + 3) % vocabulary }
            guard length + options.answerTokens + options.questionTokens + 2 <= context else {
                log("skipping \(length): beyond the model's \(context) positions")
                continue
            }
            var cold = Double.infinity, warm = Double.infinity, equal = true, cachedTokens = 0, turnTwo = 0, sharedBytes = 0
            for round in 0..<options.rounds {
                for caching in [false, true] {
                    let scheduler = BatchScheduler(engine: engine, options: .init(maximumStepTokens: 512, prefixCaching: caching))
                    let loop = Task { await scheduler.run() }
                    let one = GenerationRequest(promptTokenIDs: prompt, maxNewTokens: options.answerTokens, stopTokenIDs: [])
                    let (_, answer, _, _) = try await Self.firstToken(scheduler, one)
                    let two = GenerationRequest(promptTokenIDs: prompt + answer + question, maxNewTokens: 4, stopTokenIDs: [])
                    turnTwo = two.promptTokenIDs.count
                    let (seconds, tokens, cached, shared) = try await Self.firstToken(scheduler, two)
                    loop.cancel()
                    await scheduler.stop()
                    if caching {
                        warm = min(warm, seconds)
                        cachedTokens = cached
                        sharedBytes = shared
                        let reference = try await engine.generate(two).tokenIDs
                        equal = equal && tokens == reference
                    } else {
                        cold = min(cold, seconds)
                    }
                    log("prompt \(length) round \(round + 1) \(caching ? "with" : "without") cache: \(String(format: "%.1f", seconds * 1000)) ms, cached \(cached)")
                }
            }
            rows.append(Row(promptTokens: length, turnTwoTokens: turnTwo, cachedTokens: cachedTokens, coldSeconds: cold, warmSeconds: warm,
                            tokensEqual: equal, sharedBytes: sharedBytes,
                            cachedRowBytes: cachedTokens * engine.model.makeCache().bytesPerToken))
        }
        return Report(model: URL(fileURLWithPath: options.model).lastPathComponent, architecture: engine.description.architecture.rawValue,
                      threads: ProcessInfo.processInfo.activeProcessorCount, rows: rows)
    }
}

extension Duration {
    fileprivate var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
