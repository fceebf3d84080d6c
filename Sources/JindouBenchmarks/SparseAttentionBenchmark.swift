import Foundation
import JindouModel
import JindouNumerics

/// `jindouctl bench sparse-attention`: one decode token's attention in DeepSeek-V3.2's shape
/// (128 heads, kv_lora 512 + rope 64, an indexer of 64 heads × 128 choosing 2048) at each
/// context length, with DeepSeek Sparse Attention and as dense MLA on the same weights and
/// the same cache — the work and bytes each reads (`LatentAttentionShape.decodeWork`) and
/// the time each takes here. The cache is filled with random rows instead of a prefill (a
/// 64k-token prefill is hours on a CPU; the attention's work does not depend on the values).
public struct SparseAttentionBenchmark {
    public struct Options: Sendable {
        public var contexts: [Int]
        public var repetitions: Int
        /// Where the one-layer synthetic checkpoint is written (reused when present).
        public var directory: String

        public init(contexts: [Int], repetitions: Int, directory: String) {
            self.contexts = contexts
            self.repetitions = repetitions
            self.directory = directory
        }
    }

    public struct Row: Codable, Sendable {
        public var context: Int
        public var dense: DecodeAttentionWork
        public var sparse: DecodeAttentionWork
        public var denseSeconds: Double
        public var sparseSeconds: Double
        /// Of the sparse step: the indexer (projections, scores over every key, top-k).
        public var indexerSeconds: Double
        public var speedup: Double { denseSeconds / sparseSeconds }
    }

    public struct Report: Codable, Sendable {
        public var machine: String
        public var date: String
        public var threads: Int
        public var shape: String
        public var cacheBytesPerTokenDense: Int
        public var cacheBytesPerTokenSparse: Int
        /// The step at a context of one position: the projections, which do not grow with the context.
        public var fixedSeconds: Double
        public var rows: [Row]
        public var families: [FamilyCache]
        public var grouped: [GroupedRow]
    }

    /// Grouped-query attention of one decode token in Qwen3-30B-A3B's shape (32 query heads,
    /// 4 key/value heads of 128): the per-head kernel (each query head reads its group's rows)
    /// against the matrix-product form Jindou uses from `groupedProductMinimumLength` on.
    public struct GroupedRow: Codable, Sendable {
        public var context: Int
        /// K and V bytes of the context (fp32), what one pass over the cache reads.
        public var cacheBytes: Int
        public var perHeadSeconds: Double
        public var groupedSeconds: Double
    }

    /// The fastest of `repetitions` timed runs of `body`, in seconds.
    static func fastest(_ repetitions: Int, _ body: () -> Void) -> Double {
        (0..<repetitions).map { _ in
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }.min()!
    }

    /// A draw in [0, 1) (24 bits).
    static func uniform(_ random: inout SplitMix64) -> Float { Float(random.next() >> 40) / Float(1 << 24) }

    static func groupedRows(contexts: [Int], repetitions: Int) -> [GroupedRow] {
        let (heads, kvHeads, d) = (32, 4, 128)
        var random = SplitMix64(seed: 3)
        return contexts.map { context in
            let width = kvHeads * d
            let keys = (0..<(context * width)).map { _ in uniform(&random) - 0.5 }
            let values = (0..<(context * width)).map { _ in uniform(&random) - 0.5 }
            let query = (0..<(heads * d)).map { _ in uniform(&random) - 0.5 }
            var out = [Float](repeating: 0, count: heads * d), scores = [Float](repeating: 0, count: context)
            let perHead = fastest(repetitions) {
                KernelDispatch.active.attendOneToken(query: query, heads: heads, kvHeads: kvHeads, headDimension: d, keys: keys, values: values,
                                                     rowStride: width, first: 0, length: context, scale: 0.088, scores: &scores,
                                                     into: &out, valueDimension: d, valueRowStride: width, sinks: nil)
            }
            let grouped = fastest(repetitions) {
                attendOneToken(query: query, heads: heads, kvHeads: kvHeads, headDimension: d, keys: keys, values: values, rowStride: width,
                               length: context, scale: 0.088, scores: &scores, into: &out)
            }
            return GroupedRow(context: context, cacheBytes: 2 * context * width * 4, perHeadSeconds: perHead, groupedSeconds: grouped)
        }
    }

    /// A family's KV cache at its configuration class's defaults (transformers' flagship shape).
    public struct FamilyCache: Codable, Sendable {
        public var modelType: String
        public var layers: Int
        /// Bytes per token over all layers were every layer to keep every position.
        public var bytesPerToken: Int
        /// Bytes at 65536 tokens ÷ 65536: less where sliding layers keep a window only.
        public var bytesPerTokenAt64k: Int
        public var kind: String
        /// Bytes one sequence holds whatever its length (linear-attention layers' states).
        public var fixedStateBytes: Int = 0
    }

    /// Every registered family whose configuration defaults describe a model (those whose
    /// defaults leave a required key unset are skipped), plus the synthetic presets.
    static func familyCaches() -> [FamilyCache] {
        var configs = ModelDescription.registeredModelTypes.map { ($0, "{\"model_type\": \"\($0)\"}") }
        configs += SyntheticModelShape.presets.keys.sorted().map { ($0, SyntheticModelShape.presets[$0]!.configJSON) }
        return configs.compactMap { name, json in
            guard let d = try? ModelDescription(configJSON: Data(json.utf8), path: name) else { return nil }
            var kind = d.latentAttention.map { $0.indexer == nil ? "MLA latent" : "MLA latent + indexer key" }
                ?? (d.cacheWindows.enumerated().contains { $0.element != nil && !d.isLinearAttentionLayer($0.offset) }
                    ? "GQA K/V, sliding layers windowed" : "GQA K/V")
            if d.hasRecurrentState { kind += " (full layers) + linear-attention state" }
            return FamilyCache(modelType: name, layers: d.layerCount, bytesPerToken: d.keyValueCacheBytesPerToken,
                               bytesPerTokenAt64k: (d.keyValueCacheBytes(tokens: 65536, stepTokens: 1) - d.fixedStateBytes) / 65536,
                               kind: kind, fixedStateBytes: d.fixedStateBytes)
        }
    }

    let options: Options

    public init(options: Options) { self.options = options }

    public func run(log: (String) -> Void) throws -> Report {
        let checkpoint = try syntheticCheckpoint(log: log)
        let sparseDescription = try ModelDescription(checkpoint: checkpoint)
        var denseDescription = sparseDescription
        denseDescription.latentAttention?.indexer = nil
        let sparse = try DecoderModel(description: sparseDescription, checkpoint: checkpoint)
        let dense = try DecoderModel(description: denseDescription, checkpoint: checkpoint)
        let m = sparseDescription.latentAttention!
        var random = SplitMix64(seed: 7)
        func unit() -> Float { Self.uniform(&random) * 2 - 1 }
        let input = (0..<sparseDescription.hiddenSize).map { _ in unit() }
        var rows: [Row] = []
        var fixedSeconds = 0.0
        for context in [1] + options.contexts {
            let cache = sparse.makeCache()
            cache.reserve(context + 1)
            let keys = cache.keys(layer: 0)
            for i in 0..<(context * m.cacheRowStride) { keys[i] = unit() }
            cache.commit(context)
            func best(_ body: () -> Void) -> Double { Self.fastest(options.repetitions, body) }
            let denseSeconds = best { _ = dense.latentAttentionDecodeStep(layer: 0, input: input, cache: cache) }
            if context == 1 {
                fixedSeconds = denseSeconds
                log(String(format: "context 1 (the projections): %.2f ms", denseSeconds * 1000))
                continue
            }
            let sparseSeconds = best { _ = sparse.latentAttentionDecodeStep(layer: 0, input: input, cache: cache) }
            let indexerSeconds = best { _ = sparse.indexerDecodeSelection(layer: 0, input: input, cache: cache) }
            let row = Row(context: context, dense: denseDescription.latentAttention!.decodeWork(context: context),
                          sparse: m.decodeWork(context: context), denseSeconds: denseSeconds, sparseSeconds: sparseSeconds,
                          indexerSeconds: indexerSeconds)
            log(String(format: "context %6d: dense %8.2f ms, sparse %8.2f ms (indexer %.2f ms), ×%.2f", context,
                       denseSeconds * 1000, sparseSeconds * 1000, indexerSeconds * 1000, row.speedup))
            rows.append(row)
        }
        return Report(machine: ClusterBenchmark.machine, date: ISO8601DateFormatter().string(from: Date()), threads: Parallelism.threads,
                      shape: "DeepSeek-V3.2 attention: 128 heads, q_lora 1536, kv_lora 512, rope 64, indexer 64 × 128, top 2048; fp32 cache and bf16 weights",
                      cacheBytesPerTokenDense: denseDescription.latentAttention!.cacheRowWidth * 4,
                      cacheBytesPerTokenSparse: m.cacheRowStride * 4, fixedSeconds: fixedSeconds, rows: rows, families: Self.familyCaches(),
                      grouped: Self.groupedRows(contexts: options.contexts, repetitions: options.repetitions))
    }

    /// A one-layer DeepSeek-V3.2 checkpoint (bf16, a small dense feed-forward and vocabulary,
    /// the attention at full size).
    func syntheticCheckpoint(log: (String) -> Void) throws -> Checkpoint {
        let preset = SyntheticModelShape.presets["deepseek-v3.2"]!
        var config = try JSONSerialization.jsonObject(with: Data(preset.configJSON.utf8)) as! [String: Any]
        config["intermediate_size"] = 256
        config["first_k_dense_replace"] = 1
        let json = String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self)
        let directory = options.directory
        if !FileManager.default.fileExists(atPath: directory + "/model.safetensors.index.json") {
            log("writing a one-layer DeepSeek-V3.2 checkpoint to \(directory)")
            try SyntheticCheckpoint.write(shape: SyntheticModelShape(name: "deepseek-v3.2-attention", configJSON: json), layers: 1,
                                          dtype: .bfloat16, directory: directory, vocabularySize: 256)
        }
        return try Checkpoint(directory: directory)
    }
}

extension SparseAttentionBenchmark.Report {
    public var markdown: String {
        func mb(_ b: Int) -> String { String(format: "%.1f", Double(b) / 1e6) }
        func g(_ n: Int) -> String { String(format: "%.2f", Double(n) / 1e9) }
        var lines = [
            "## Sparse attention against dense MLA (`jindouctl bench sparse-attention`)",
            "",
            "\(shape). Machine: \(machine), \(threads) kernel thread(s) (`JINDOU_THREADS`). Run: \(date).",
            "One decode token's attention of one layer (absorbed MLA form; the context-independent",
            "projections included in the times, excluded from the counts), over a cache of random rows.",
            String(format: "The projections alone (the step at a context of 1): %.1f ms.", fixedSeconds * 1000),
            "Cache per token and layer: dense \(cacheBytesPerTokenDense) B (latent 512 + rope 64, fp32),",
            "sparse \(cacheBytesPerTokenSparse) B (+ the indexer key).",
            "",
            "| context | dense MB read | sparse MB read | ÷ | dense GMAC | sparse GMAC | ÷ | dense ms | sparse ms (indexer) | × faster | × faster without the projections |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows {
            lines.append("| \(r.context) | \(mb(r.dense.cacheBytes)) | \(mb(r.sparse.cacheBytes)) | "
                         + String(format: "%.1f", Double(r.dense.cacheBytes) / Double(r.sparse.cacheBytes))
                         + " | \(g(r.dense.multiplyAdds)) | \(g(r.sparse.multiplyAdds)) | "
                         + String(format: "%.1f", Double(r.dense.multiplyAdds) / Double(r.sparse.multiplyAdds))
                         + String(format: " | %.1f | %.1f (%.1f) | %.2f | %.2f |", r.denseSeconds * 1000, r.sparseSeconds * 1000,
                                  r.indexerSeconds * 1000, r.speedup,
                                  max(0, r.denseSeconds - fixedSeconds) / max(1e-9, r.sparseSeconds - fixedSeconds)))
        }
        lines += [
            "",
            "Grouped-query attention of one decode token in Qwen3-30B-A3B's shape (32 query heads over 4",
            "key/value heads of 128, fp32 cache): the per-head kernel, where each query head reads its",
            "group's rows, against two matrix products per key/value head (each row read once), which",
            "Jindou uses from \(groupedProductMinimumLength) attended positions on:",
            "",
            "| context | K+V MB | per-head kernel ms | grouped products ms | × faster | grouped GB/s |",
            "|---|---|---|---|---|---|",
        ]
        for g in grouped {
            lines.append(String(format: "| %d | %.1f | %.2f | %.2f | %.2f | %.1f |", g.context, Double(g.cacheBytes) / 1e6, g.perHeadSeconds * 1000,
                                g.groupedSeconds * 1000, g.perHeadSeconds / g.groupedSeconds, Double(g.cacheBytes) / g.groupedSeconds / 1e9))
        }
        lines += [
            "",
            "KV cache per token of each family at its transformers configuration defaults (fp32 rows; the",
            "`model_type` rows; presets by name), as the scheduler budgets it:",
            "",
            "| family | layers | cache | KiB per token | KiB per token at 64k context | fixed MiB per sequence |",
            "|---|---|---|---|---|---|",
        ]
        for f in families {
            lines.append("| `\(f.modelType)` | \(f.layers) | \(f.kind) | " + String(format: "%.1f | %.1f | %.1f |", Double(f.bytesPerToken) / 1024,
                                                                                        Double(f.bytesPerTokenAt64k) / 1024,
                                                                                        Double(f.fixedStateBytes) / 1_048_576))
        }
        return lines.joined(separator: "\n")
    }
}
