import Foundation
import JindouBalancing
import JindouModel
import JindouNumerics

/// `jindouctl bench linear-attention`: one decode token's token mixers in Qwen3-Next-80B-A3B's
/// shape (36 Gated DeltaNet layers and 12 gated full-attention layers) against Qwen3-30B-A3B's
/// (48 full-attention layers) at each context length, and the memory one sequence holds by
/// context length. The linear layer's cost is its projections plus one pass over its fixed
/// state (32 heads × 128 × 128 fp32 = 2 MiB); the full-attention layers read the whole cache.
/// Weights are random (bf16), caches random rows: the work does not depend on the values.
///
/// Prefill: the delta rule alone over one step's run of T tokens, token by token against the
/// chunked form (DeltaRule.swift) at each chunk size, at Qwen3-Next-80B-A3B's shape (decay per
/// head) and Kimi-Linear-48B-A3B's (32 heads of 128, decay per key channel), every value head
/// on the kernel threads — the measurement behind `DeltaRuleForm.automaticChunkedMinimumTokens`
/// — and one whole Gated DeltaNet layer (projections, conv, norm) prefilling `prefillTokens`
/// tokens both ways (chunks of 64).
public struct LinearAttentionBenchmark {
    /// Context lengths, repetitions, and where the synthetic checkpoints are written.
    public typealias Options = SparseAttentionBenchmark.Options

    public struct Row: Codable, Sendable {
        public var context: Int
        /// Qwen3-Next: one linear layer's and one full-attention layer's decode step.
        public var linearLayerSeconds: Double
        public var nextFullLayerSeconds: Double
        /// Qwen3-30B-A3B: one attention layer's decode step.
        public var qwen3LayerSeconds: Double
        /// Every token mixer of one decode token (36 + 12 layers; 48 layers).
        public var nextMixersSeconds: Double
        public var qwen3MixersSeconds: Double
        /// What one sequence of this length holds (cache and state, fp32).
        public var nextSequenceBytes: Int
        public var qwen3SequenceBytes: Int
    }

    public struct Report: Codable, Sendable {
        public var machine: String
        public var date: String
        public var threads: Int
        /// The `jindouctl` command line that reproduces this report.
        public var command: String
        public var nextLinearLayers: Int
        public var nextFullLayers: Int
        public var qwen3Layers: Int
        /// Fixed state of one sequence (every linear layer), and cache bytes per token.
        public var nextFixedStateBytes: Int
        public var nextBytesPerToken: Int
        public var qwen3BytesPerToken: Int
        public var rows: [Row]
        /// Memory per sequence at more context lengths (exact, from the descriptions).
        public var memory: [MemoryPoint]
        /// The delta rule alone over one step's run, by rule and run length.
        public var deltaRulePrefill: [DeltaRulePrefill]
        /// One whole Gated DeltaNet layer of Qwen3-Next-80B-A3B prefilling one run.
        public var layerPrefill: LayerPrefill
    }

    /// The delta rule of every value head of one layer over a run of `tokens` tokens.
    public struct DeltaRulePrefill: Codable, Sendable {
        /// "gated-deltanet" (Qwen3-Next-80B-A3B: 32 value heads over 16 key heads of 128, a
        /// decay per head) or "kimi-delta" (Kimi-Linear-48B-A3B: 32 heads of 128, a decay per
        /// key channel).
        public var rule: String
        public var tokens: Int
        /// The chunked form's chunk size.
        public var chunk: Int
        public var recurrentSeconds: Double
        public var chunkedSeconds: Double
        /// recurrent ÷ chunked.
        public var speedup: Double
    }

    /// One Gated DeltaNet layer (its projections, conv, delta rule and gated norm) over a run.
    public struct LayerPrefill: Codable, Sendable {
        public var tokens: Int
        public var recurrentSeconds: Double
        public var chunkedSeconds: Double
        public var recurrentTokensPerSecond: Double
        public var chunkedTokensPerSecond: Double
        /// recurrent ÷ chunked.
        public var speedup: Double
    }

    public struct MemoryPoint: Codable, Sendable {
        public var context: Int
        public var nextBytes: Int
        public var qwen3Bytes: Int
    }

    let options: Options
    /// The run length of the whole-layer prefill measurement.
    let prefillTokens: Int
    /// Run lengths and chunk sizes of the delta-rule measurement.
    let deltaRuleTokens: [Int]
    let deltaRuleChunks: [Int]

    public init(options: Options, prefillTokens: Int = 4096, deltaRuleTokens: [Int] = [16, 64, 256, 1024, 4096],
                deltaRuleChunks: [Int] = [16, 64]) {
        self.options = options
        self.prefillTokens = prefillTokens
        self.deltaRuleTokens = deltaRuleTokens
        self.deltaRuleChunks = deltaRuleChunks
    }

    public func run(log: (String) -> Void) throws -> Report {
        let next = try model("qwen3-next-80b-a3b", layers: 4, log: log)   // layers 0–2 linear, 3 full
        let qwen3 = try model("qwen3-30b-a3b", layers: 1, log: log)
        let nd = next.description, qd = qwen3.description
        let linearLayer = try require(nd.linearAttentionLayers.firstIndex(of: true))
        let fullLayer = try require(nd.linearAttentionLayers.firstIndex(of: false))
        let nextLinear = 36, nextFull = 12, qwen3Layers = 48  // the full models' layer counts
        var random = SplitMix64(seed: 11)
        func unit() -> Float { SparseAttentionBenchmark.uniform(&random) * 2 - 1 }
        let input = (0..<nd.hiddenSize).map { _ in unit() }
        /// The fastest of the repetitions after one untimed run (the first context's rows
        /// otherwise include the process warming up: page faults on the mapped weights).
        func best(_ body: () -> Void) -> Double {
            body()
            return SparseAttentionBenchmark.fastest(options.repetitions, body)
        }
        /// A cache of `context` random rows in every layer of rows.
        func filled(_ model: DecoderModel, _ context: Int) -> KVCache {
            let cache = model.makeCache()
            cache.reserve(context + 1)
            let widths = model.description.keyValueCacheWidths
            for l in 0..<model.description.cacheLayerCount where !model.description.isLinearAttentionLayer(l) {
                let keys = cache.keys(layer: l), values = cache.values(layer: l)
                for i in 0..<(context * widths.keys) { keys[i] = unit() }
                for i in 0..<(context * widths.values) { values[i] = unit() }
            }
            cache.commit(context)
            return cache
        }
        var rows: [Row] = []
        for context in options.contexts {
            let nextCache = filled(next, context), qwen3Cache = filled(qwen3, context)
            let linear = best { _ = next.mixerDecodeStep(layer: linearLayer, input: input, cache: nextCache) }
            let full = best { _ = next.mixerDecodeStep(layer: fullLayer, input: input, cache: nextCache) }
            let dense = best { _ = qwen3.mixerDecodeStep(layer: 0, input: input, cache: qwen3Cache) }
            let row = Row(context: context, linearLayerSeconds: linear, nextFullLayerSeconds: full, qwen3LayerSeconds: dense,
                          nextMixersSeconds: Double(nextLinear) * linear + Double(nextFull) * full,
                          qwen3MixersSeconds: Double(qwen3Layers) * dense,
                          nextSequenceBytes: Self.sequenceBytes(nd, layers: (nextLinear, nextFull), context: context),
                          qwen3SequenceBytes: qd.keyValueCacheBytesPerToken * qwen3Layers * context)
            log(String(format: "context %6d: Qwen3-Next linear %.2f ms, full %.2f ms (mixers %.1f ms); Qwen3-30B layer %.2f ms (mixers %.1f ms)",
                       context, linear * 1000, full * 1000, row.nextMixersSeconds * 1000, dense * 1000, row.qwen3MixersSeconds * 1000))
            rows.append(row)
        }
        let memory = [1024, 4096, 8192, 16384, 32768, 65536, 131072, 262144].map {
            MemoryPoint(context: $0, nextBytes: Self.sequenceBytes(nd, layers: (nextLinear, nextFull), context: $0),
                        qwen3Bytes: qd.keyValueCacheBytesPerToken * qwen3Layers * $0)
        }
        var deltaRulePrefill: [DeltaRulePrefill] = []
        for (rule, keyHeads, perChannel) in [("gated-deltanet", 16, false), ("kimi-delta", 32, true)] {
            for tokens in deltaRuleTokens {
                let (recurrent, chunked) = Self.deltaRuleSeconds(valueHeads: 32, keyHeads: keyHeads, dimension: 128, tokens: tokens,
                                                                 perChannel: perChannel, chunks: deltaRuleChunks, repetitions: options.repetitions)
                for (chunk, seconds) in zip(deltaRuleChunks, chunked) {
                    deltaRulePrefill.append(DeltaRulePrefill(rule: rule, tokens: tokens, chunk: chunk, recurrentSeconds: recurrent,
                                                             chunkedSeconds: seconds, speedup: recurrent / seconds))
                    log(String(format: "delta rule %@, %5d tokens: recurrent %.2f ms, chunked (%d) %.2f ms (%.2f×)", rule, tokens,
                               recurrent * 1000, chunk, seconds * 1000, recurrent / seconds))
                }
            }
        }
        let prefillInput = (0..<(prefillTokens * nd.hiddenSize)).map { _ in unit() }
        let prefillCache = next.makeCache()
        let layerRecurrent = best { _ = next.linearMixerPrefill(layer: linearLayer, input: prefillInput, tokens: prefillTokens, cache: prefillCache, form: .recurrent) }
        let layerChunked = best { _ = next.linearMixerPrefill(layer: linearLayer, input: prefillInput, tokens: prefillTokens, cache: prefillCache, form: .chunked) }
        let layerPrefill = LayerPrefill(tokens: prefillTokens, recurrentSeconds: layerRecurrent, chunkedSeconds: layerChunked,
                                        recurrentTokensPerSecond: Double(prefillTokens) / layerRecurrent,
                                        chunkedTokensPerSecond: Double(prefillTokens) / layerChunked, speedup: layerRecurrent / layerChunked)
        log(String(format: "Gated DeltaNet layer prefilling %d tokens: recurrent %.0f tokens/s, chunked %.0f tokens/s (%.2f×)", prefillTokens,
                   layerPrefill.recurrentTokensPerSecond, layerPrefill.chunkedTokensPerSecond, layerPrefill.speedup))
        let perLinearLayer = nd.linearAttention!.stateFloats * MemoryLayout<Float>.size
        func list(_ values: [Int]) -> String { values.map(String.init).joined(separator: ",") }
        let command = "jindouctl bench linear-attention --contexts \(list(options.contexts)) --repetitions \(options.repetitions)"
            + " --prefill-tokens \(prefillTokens) --delta-rule-tokens \(list(deltaRuleTokens)) --delta-rule-chunks \(list(deltaRuleChunks))"
        return Report(machine: ClusterBenchmark.machine, date: ISO8601DateFormatter().string(from: Date()), threads: Parallelism.threads,
                      command: command, nextLinearLayers: nextLinear, nextFullLayers: nextFull, qwen3Layers: qwen3Layers,
                      nextFixedStateBytes: perLinearLayer * nextLinear,
                      nextBytesPerToken: nd.keyValueCacheBytesPerToken * nextFull, qwen3BytesPerToken: qd.keyValueCacheBytesPerToken * qwen3Layers,
                      rows: rows, memory: memory, deltaRulePrefill: deltaRulePrefill, layerPrefill: layerPrefill)
    }

    /// The fastest of `repetitions` runs of the delta rule over `tokens` tokens for every value
    /// head (spread over the kernel threads as `gatedDeltaNet` spreads them), token by token
    /// and chunked in chunks of each of `chunks`, on random inputs shaped as the layer's:
    /// L2-normalised q (× d^-½) and k, β in (0, 1), log decays in (−0.5, 0), one state per
    /// head carried from run to run.
    static func deltaRuleSeconds(valueHeads: Int, keyHeads: Int, dimension d: Int, tokens: Int, perChannel: Bool,
                                 chunks: [Int], repetitions: Int) -> (recurrent: Double, chunked: [Double]) {
        var random = SplitMix64(seed: 5)
        func unit() -> Float { SparseAttentionBenchmark.uniform(&random) * 2 - 1 }
        let rowStride = 2 * keyHeads * d + valueHeads * d, ratio = valueHeads / keyHeads
        var rows = [Float](repeating: 0, count: tokens * rowStride)
        for t in 0..<tokens {
            for head in 0..<(2 * keyHeads) {
                let x = (0..<d).map { _ in unit() }
                let scale = 1 / (x.reduce(0) { $0 + $1 * $1 } + 1e-6).squareRoot() * (head < keyHeads ? 1 / Float(d).squareRoot() : 1)
                for i in 0..<d { rows[t * rowStride + head * d + i] = x[i] * scale }
            }
            for j in 0..<(valueHeads * d) { rows[t * rowStride + 2 * keyHeads * d + j] = unit() }
        }
        let beta = (0..<(tokens * valueHeads)).map { _ in SparseAttentionBenchmark.uniform(&random) }
        let decayWidth = perChannel ? valueHeads * d : valueHeads
        let decay = (0..<(tokens * decayWidth)).map { _ in -0.5 * SparseAttentionBenchmark.uniform(&random) }
        var state = (0..<(valueHeads * d * d)).map { _ in unit() * 0.1 }
        var output = [Float](repeating: 0, count: tokens * valueHeads * d)
        func time(chunk: Int?) -> Double {
            rows.withUnsafeBufferPointer { r in
                beta.withUnsafeBufferPointer { b in
                    decay.withUnsafeBufferPointer { g in
                        state.withUnsafeMutableBufferPointer { s in
                            output.withUnsafeMutableBufferPointer { o in
                                let rows = r.baseAddress!, beta = b.baseAddress!, decay = g.baseAddress!, state = s.baseAddress!, out = o.baseAddress!
                                return SparseAttentionBenchmark.fastest(repetitions) {
                                    parallelChunks(valueHeads, minimumChunk: 1) { heads in
                                        for h in heads {
                                            let g = h / ratio
                                            let run = DeltaRuleRun(query: rows + g * d, key: rows + (keyHeads + g) * d, value: rows + (2 * keyHeads + h) * d,
                                                                   rowStride: rowStride, beta: beta + h, betaStride: valueHeads,
                                                                   decay: decay + (perChannel ? h * d : h), decayStride: decayWidth, perChannel: perChannel,
                                                                   output: out + h * d, outputStride: valueHeads * d)
                                            if let chunk {
                                                chunkedDeltaRule(run, tokens: tokens, state: state + h * d * d, keyDimension: d, valueDimension: d,
                                                                 chunk: chunk)
                                            } else {
                                                recurrentDeltaRule(run, tokens: 0..<tokens, state: state + h * d * d, keyDimension: d, valueDimension: d)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return (time(chunk: nil), chunks.map { time(chunk: $0) })
    }

    /// One sequence of the full Qwen3-Next: every linear layer's state plus the full layers' rows.
    static func sequenceBytes(_ d: ModelDescription, layers: (linear: Int, full: Int), context: Int) -> Int {
        d.linearAttention!.stateFloats * MemoryLayout<Float>.size * layers.linear
            + d.keyValueCacheBytesPerToken * layers.full * context
    }

    /// A synthetic checkpoint of `preset` with `layers` layers, 8 experts (the mixers are what
    /// is timed) and a small vocabulary.
    func model(_ preset: String, layers: Int, log: (String) -> Void) throws -> DecoderModel {
        let shape = SyntheticModelShape.presets[preset]!
        var config = try JSONSerialization.jsonObject(with: Data(shape.configJSON.utf8)) as! [String: Any]
        config[preset.hasPrefix("qwen3-next") ? "num_experts" : "num_local_experts"] = 8
        config["num_experts_per_tok"] = 2
        let json = String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self)
        let directory = options.directory + "/" + preset
        if !FileManager.default.fileExists(atPath: directory + "/model.safetensors.index.json") {
            log("writing a \(layers)-layer \(preset) checkpoint to \(directory)")
            try SyntheticCheckpoint.write(shape: SyntheticModelShape(name: preset + "-mixers", configJSON: json), layers: layers,
                                          dtype: .bfloat16, directory: directory, vocabularySize: 256)
        }
        let checkpoint = try Checkpoint(directory: directory)
        return try DecoderModel(description: ModelDescription(checkpoint: checkpoint), checkpoint: checkpoint)
    }
}

private func require<T>(_ value: T?) throws -> T {
    guard let value else { throw CheckpointError.badConfig(path: "benchmark", field: "layer_types", reason: "no such layer") }
    return value
}

extension LinearAttentionBenchmark.Report {
    public var markdown: String {
        func mib(_ b: Int) -> String { String(format: "%.1f", Double(b) / 1_048_576) }
        var lines = [
            "## Linear attention: decode cost and memory by context (`jindouctl bench linear-attention`)",
            "",
            "Qwen3-Next-80B-A3B's token mixers (\(nextLinearLayers) Gated DeltaNet layers: 16 q/k heads and 32 value heads of 128,",
            "a conv of 4; \(nextFullLayers) gated full-attention layers: 16 heads over 2 key/value heads of 256) against",
            "Qwen3-30B-A3B's (\(qwen3Layers) layers: 32 heads over 4 of 128), one decode token each, bf16 weights, fp32 caches",
            "of random rows; the per-model totals are the measured layers × the full models' layer counts (experts and",
            "the rest of the step are the same work at every context and left out). Machine: \(machine), \(threads) kernel",
            "thread(s). Run: \(date), `\(command)` (release build).",
            "",
            "| context | Qwen3-Next linear layer ms | Qwen3-Next full layer ms | Qwen3-Next mixers ms | Qwen3-30B layer ms | Qwen3-30B mixers ms | Qwen3-30B ÷ Qwen3-Next | Qwen3-Next MiB / sequence | Qwen3-30B MiB / sequence |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows {
            lines.append(String(format: "| %d | %.2f | %.2f | %.1f | %.2f | %.1f | %.2f | ", r.context, r.linearLayerSeconds * 1000,
                                r.nextFullLayerSeconds * 1000, r.nextMixersSeconds * 1000, r.qwen3LayerSeconds * 1000,
                                r.qwen3MixersSeconds * 1000, r.qwen3MixersSeconds / r.nextMixersSeconds)
                         + "\(mib(r.nextSequenceBytes)) | \(mib(r.qwen3SequenceBytes)) |")
        }
        lines += [
            "",
            "Memory per sequence (fp32, as the scheduler budgets it): Qwen3-Next holds \(mib(nextFixedStateBytes)) MiB of fixed",
            "state (every linear layer's conv history and 32 × 128 × 128 recurrent state) plus \(nextBytesPerToken / 1024) KiB per",
            "token (its \(nextFullLayers) full layers); Qwen3-30B-A3B \(qwen3BytesPerToken / 1024) KiB per token.",
            "",
            "| context | Qwen3-Next MiB | Qwen3-30B-A3B MiB |",
            "|---|---|---|",
        ]
        for m in memory { lines.append("| \(m.context) | \(mib(m.nextBytes)) | \(mib(m.qwen3Bytes)) |") }
        lines += ["", "![memory per sequence by context](benchmarks/linear-attention-memory.png)"]
        lines += [
            "",
            "### Prefill: the delta rule token by token against the chunked form",
            "",
            "One step's run of T tokens through every value head of one layer (32 heads of 128 × 128 fp32 state, on the",
            "kernel threads): token by token through the kernels' `deltaRuleStep`, against the chunked form (chunks of C,",
            "OpenBLAS products; transformers uses C = 64). Gated DeltaNet: Qwen3-Next-80B-A3B's 32 value heads over 16 key",
            "heads, a decay per head; Kimi Delta Attention: Kimi-Linear-48B-A3B's 32 heads, a decay per key channel. Random",
            "inputs shaped as the layers' (normalised q and k, β in (0, 1), log decays in (−0.5, 0)). A ratio below 1: the",
            "chunked form is slower.",
            "",
            "| rule | T | token by token ms | µs per token | C | chunked ms | token by token ÷ chunked |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in deltaRulePrefill {
            lines.append(String(format: "| %@ | %d | %.2f | %.1f | %d | %.2f | %.2f |", r.rule == "kimi-delta" ? "Kimi Delta Attention" : "Gated DeltaNet",
                                r.tokens, r.recurrentSeconds * 1000, r.recurrentSeconds / Double(r.tokens) * 1e6, r.chunk,
                                r.chunkedSeconds * 1000, r.speedup))
        }
        lines += [
            "",
            String(format: "One whole Gated DeltaNet layer of Qwen3-Next-80B-A3B (projections, conv, delta rule, gated norm; bf16 weights) "
                   + "prefilling %d tokens in one step: %.0f tokens/s token by token, %.0f tokens/s chunked (%.2f×).",
                   layerPrefill.tokens, layerPrefill.recurrentTokensPerSecond, layerPrefill.chunkedTokensPerSecond, layerPrefill.speedup),
        ]
        return lines.joined(separator: "\n")
    }

    /// Memory per sequence against context (log₂ x axis), one polyline per model.
    public var memoryPlot: RGBImage {
        let next: (UInt8, UInt8, UInt8) = (40, 90, 170), dense: (UInt8, UInt8, UInt8) = (230, 130, 40)
        let left = 80, top = 60, plotWidth = 560, plotHeight = 300
        var image = RGBImage(width: left + plotWidth + 40, height: top + plotHeight + 60)
        image.draw("MEMORY PER SEQUENCE (MIB) BY CONTEXT", x: left, y: 10)
        image.fill(x: left, y: 36, width: 10, height: 10, color: next)
        image.draw("QWEN3-NEXT-80B-A3B", x: left + 14, y: 37, scale: 1)
        image.fill(x: left + 160, y: 36, width: 10, height: 10, color: dense)
        image.draw("QWEN3-30B-A3B", x: left + 174, y: 37, scale: 1)
        let largest = Double(memory.map { max($0.nextBytes, $0.qwen3Bytes) }.max() ?? 1)
        let lo = log2(Double(memory.first?.context ?? 1)), hi = log2(Double(memory.last?.context ?? 2))
        func point(_ context: Int, _ bytes: Int) -> (Int, Int) {
            let x = left + Int(Double(plotWidth) * (log2(Double(context)) - lo) / max(hi - lo, 1))
            let y = top + plotHeight - Int(Double(plotHeight) * Double(bytes) / largest)
            return (x, y)
        }
        image.fill(x: left, y: top + plotHeight, width: plotWidth, height: 1, color: (0, 0, 0))
        image.fill(x: left, y: top, width: 1, height: plotHeight, color: (0, 0, 0))
        image.draw(String(format: "%.0f", largest / 1_048_576), x: 8, y: top, scale: 1)
        image.draw("0", x: 8, y: top + plotHeight - 8, scale: 1)
        for (series, color) in [(memory.map { ($0.context, $0.nextBytes) }, next), (memory.map { ($0.context, $0.qwen3Bytes) }, dense)] {
            for (a, b) in zip(series, series.dropFirst()) {
                let (x0, y0) = point(a.0, a.1), (x1, y1) = point(b.0, b.1)
                let steps = max(abs(x1 - x0), abs(y1 - y0), 1)
                for s in 0...steps {
                    image.fill(x: x0 + (x1 - x0) * s / steps - 1, y: y0 + (y1 - y0) * s / steps - 1, width: 3, height: 3, color: color)
                }
            }
            for (context, bytes) in series {
                let (x, y) = point(context, bytes)
                image.fill(x: x - 3, y: y - 3, width: 7, height: 7, color: color)
            }
        }
        for m in memory {
            let (x, _) = point(m.context, 0)
            image.draw(m.context >= 1024 ? "\(m.context / 1024)K" : "\(m.context)", x: x - 8, y: top + plotHeight + 8, scale: 1)
        }
        image.draw("CONTEXT (TOKENS)", x: left + plotWidth / 2 - 50, y: top + plotHeight + 28, scale: 1)
        return image
    }
}
