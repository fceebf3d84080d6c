import Foundation

/// An importance matrix written by llama.cpp's `llama-imatrix` (GGUF: per weight tensor a
/// `<name>.in_sum2` of Σx² per input column — per expert for stacked experts — and a
/// `<name>.counts` of how many activations were summed), read as llama-quantize reads it
/// (tools/quantize/quantize.cpp `load_imatrix`): each column's mean squared activation,
/// 1 for an expert that saw no tokens. Encoders weigh each column's rounding error by it.
public struct ImportanceMatrix: Sendable {
    public let path: String
    /// GGUF tensor name → importances (input columns × experts).
    public let entries: [String: [Float]]
    public let datasets: [String]
    public let chunkCount: Int

    public init(path: String) throws {
        let file = try GGUFFile(path: path)
        self.path = path
        guard file.metadata["general.type"]?.string == "imatrix" || file.tensors.contains(where: { $0.name.hasSuffix(".in_sum2") }) else {
            throw GGUFError(path: path, reason: "not an importance matrix (no <tensor>.in_sum2 tensors; written by llama-imatrix?)")
        }
        guard file.metadata["imatrix.datasets"] != nil, file.metadata["imatrix.chunk_count"] != nil,
              file.metadata["imatrix.chunk_size"] != nil else {
            throw GGUFError(path: path, reason: "importance matrix metadata (imatrix.datasets, chunk_count, chunk_size) is missing")
        }
        datasets = file.metadata["imatrix.datasets"]?.array?.compactMap(\.string) ?? []
        chunkCount = file.metadata["imatrix.chunk_count"]?.integer ?? 0
        var entries: [String: [Float]] = [:]
        for sums in file.tensors where sums.name.hasSuffix(".in_sum2") {
            let name = String(sums.name.dropLast(".in_sum2".count))
            guard let counts = file.tensor(name + ".counts") else {
                throw GGUFError(path: path, reason: "'\(sums.name)' has no '\(name).counts'")
            }
            guard sums.type == .f32, counts.type == .f32 else {
                throw GGUFError(path: path, reason: "'\(name)': in_sum2 and counts must be F32")
            }
            let s = Array(try file.bytes(of: sums).bindMemory(to: Float.self))
            let c = Array(try file.bytes(of: counts).bindMemory(to: Float.self))
            guard !c.isEmpty, s.count % c.count == 0 else {
                throw GGUFError(path: path, reason: "'\(name)': \(s.count) sums do not split into \(c.count) experts")
            }
            let columns = s.count / c.count
            var values = [Float](repeating: 1, count: s.count)
            for expert in c.indices where c[expert] > 0 {
                for i in 0..<columns { values[expert * columns + i] = s[expert * columns + i] / c[expert] }
            }
            entries[name] = values
        }
        self.entries = entries
    }

    /// The importances for tensor `name`'s rows of `columns` inputs (expert `expert`'s part of
    /// stacked experts); nil when the matrix has none (llama-quantize then quantises without),
    /// an error when they do not fit the tensor.
    public func importance(for name: String, columns: Int, expert: Int?) throws -> [Float]? {
        guard let values = entries[name] else { return nil }
        let slice = expert ?? 0
        guard values.count % columns == 0, (slice + 1) * columns <= values.count else {
            throw GGUFError(path: path, reason: "importance of '\(name)' has \(values.count) values, which does not fit rows of \(columns)\(expert.map { " for expert \($0)" } ?? "")")
        }
        return Array(values[(slice * columns)..<((slice + 1) * columns)])
    }

    /// The keys llama-quantize writes about the matrix it used.
    var metadata: [(String, GGUFWriter.Value)] {
        var keys: [(String, GGUFWriter.Value)] = [("quantize.imatrix.file", .string(String(path.prefix(127))))]
        if let first = datasets.first { keys.append(("quantize.imatrix.dataset", .string(String(first.prefix(127))))) }
        keys.append(("quantize.imatrix.entries_count", .i32(Int32(entries.count))))
        if chunkCount > 0 { keys.append(("quantize.imatrix.chunks_count", .i32(Int32(chunkCount)))) }
        return keys
    }
}
