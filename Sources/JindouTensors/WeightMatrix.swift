/// A row-major 2-D weight in its checkpoint dtype (F32, F16 or BF16), usually pointing
/// into a memory-mapped safetensors file. Rows are output features, columns input
/// features, exactly as `torch.nn.Linear.weight` stores them.
///
/// `@unchecked Sendable`: the memory is immutable after loading and `owner` keeps it
/// alive (the mapping or the owned buffer), so sharing across threads is safe.
public struct WeightMatrix: @unchecked Sendable {
    public let rows: Int
    public let columns: Int
    public let dtype: DType
    public let base: UnsafeRawPointer
    public let owner: AnyObject?
    /// Per-block dequantisation scales of an FP8 matrix (DeepSeek's `weight_scale_inv`).
    public let blockScales: BlockScales?
    /// A GGUF block format (any `BlockFormat`): each row is `columns / blockSize` blocks
    /// and `dtype` is `.uint8` (the raw bytes).
    public let blockFormat: BlockFormat?
    /// Bytes from one row to the next.
    public let rowBytes: Int
    /// A block-quantised matrix multiplied with fp32 activations (each row widened, then an
    /// fp32 dot product), instead of ggml's int8 activation blocks: what a checkpoint means
    /// when its reference dequantises the weights and multiplies in float (gpt-oss's MXFP4
    /// experts in safetensors, as transformers runs them).
    public private(set) var floatActivations = false

    public init(rows: Int, columns: Int, dtype: DType, base: UnsafeRawPointer, owner: AnyObject?, blockScales: BlockScales? = nil) {
        precondition(dtype.isKernelWeightType || (dtype == .float8E4M3 && blockScales != nil),
                     "WeightMatrix needs F32, F16, BF16, or F8_E4M3 with block scales, got \(dtype.rawValue)")
        self.rows = rows
        self.columns = columns
        self.dtype = dtype
        self.base = base
        self.owner = owner
        self.blockScales = blockScales
        blockFormat = nil
        rowBytes = columns * dtype.byteSize
    }

    /// A block-quantised matrix: `rows` rows of `format.rowBytes(columns:)` bytes each.
    public init(rows: Int, columns: Int, quantized format: BlockFormat, base: UnsafeRawPointer, owner: AnyObject?) {
        guard let rowBytes = format.rowBytes(columns: columns) else {
            preconditionFailure("\(format.rawValue) rows need a multiple of \(format.blockSize) columns, got \(columns)")
        }
        self.rows = rows
        self.columns = columns
        dtype = .uint8
        self.base = base
        self.owner = owner
        blockScales = nil
        blockFormat = format
        self.rowBytes = rowBytes
    }

    /// `self` encoded in `format` (owned memory), as llama-quantize would encode it without
    /// an importance matrix. Precondition: `format.canQuantize`.
    public func quantized(_ format: BlockFormat) -> WeightMatrix {
        precondition(blockFormat == nil, "already quantised")
        guard let rowBytes = format.rowBytes(columns: columns) else {
            preconditionFailure("\(format.rawValue) rows need a multiple of \(format.blockSize) columns, got \(columns)")
        }
        let storage = OwnedBytes(byteCount: max(1, rows * rowBytes))
        encodeRows(0..<rows, as: format, into: storage.pointer)
        return WeightMatrix(rows: rows, columns: columns, quantized: format, base: UnsafeRawPointer(storage.pointer), owner: storage)
    }

    /// Rows `range` encoded in `format`, one after another, into `out`
    /// (`range.count × format.rowBytes(columns:)` bytes), with `importance` (one positive
    /// weight per column: an importance matrix's entries, as llama-quantize passes them) when
    /// given. Precondition: `format.canQuantize`.
    public func encodeRows(_ range: Range<Int>, as format: BlockFormat, importance: UnsafeBufferPointer<Float>? = nil,
                           into out: UnsafeMutableRawPointer) {
        precondition(blockFormat == nil, "already quantised")
        guard let rowBytes = format.rowBytes(columns: columns) else {
            preconditionFailure("\(format.rawValue) rows need a multiple of \(format.blockSize) columns, got \(columns)")
        }
        precondition(importance.map { $0.count == columns } ?? true, "importance needs one weight per column")
        withUnsafeTemporaryAllocation(of: Float.self, capacity: columns) { row in
            for (i, r) in range.enumerated() {
                widenRows(r..<(r + 1), into: row.baseAddress!)
                format.quantize(UnsafeBufferPointer(row), into: UnsafeMutableRawBufferPointer(start: out + i * rowBytes, count: rowBytes),
                                importance: importance)
            }
        }
    }

    /// A matrix that owns a copy of `values` (row-major, `rows × columns`) as F32.
    public init(rows: Int, columns: Int, float32 values: [Float]) {
        precondition(values.count == rows * columns)
        let storage = OwnedBytes(byteCount: values.count * 4, alignment: 64)
        values.withUnsafeBytes { storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        self.init(rows: rows, columns: columns, dtype: .float32, base: UnsafeRawPointer(storage.pointer), owner: storage)
    }

    public var byteCount: Int { rows * rowBytes }

    @inlinable
    public func rowPointer(_ row: Int) -> UnsafeRawPointer {
        base + row * rowBytes
    }

    /// The same matrix, multiplied with fp32 activations (see `floatActivations`).
    public func withFloatActivations() -> WeightMatrix {
        var matrix = self
        matrix.floatActivations = blockFormat != nil
        return matrix
    }

    /// Rows `range` as a matrix sharing the same memory.
    public func rows(_ range: Range<Int>) -> WeightMatrix {
        if let blockFormat {
            var part = WeightMatrix(rows: range.count, columns: columns, quantized: blockFormat, base: rowPointer(range.lowerBound), owner: owner)
            part.floatActivations = floatActivations
            return part
        }
        return WeightMatrix(rows: range.count, columns: columns, dtype: dtype, base: rowPointer(range.lowerBound), owner: owner,
                            blockScales: blockScales?.offset(rows: range.lowerBound))
    }

    /// Columns `range` (any list of columns: a range, or every other one for interleaved
    /// gate/up storage), transposed, as a new matrix of `range.count` rows × `rows` columns
    /// in the same dtype (owned memory). Turns input-major [in, out] storage into the
    /// [out, in] layout the kernels read. Not for block-scaled FP8.
    public func transposedCopy<Columns: Collection<Int>>(columns range: Columns) -> WeightMatrix {
        precondition(blockScales == nil && blockFormat == nil && range.allSatisfy { (0..<columns).contains($0) })
        let size = dtype.byteSize
        let storage = OwnedBytes(byteCount: range.count * rows * size)
        func copy<T>(_: T.Type) {
            let source = base.assumingMemoryBound(to: T.self)
            let target = storage.pointer.assumingMemoryBound(to: T.self)
            for r in 0..<rows {
                let row = source + r * columns
                for (i, c) in range.enumerated() { target[i * rows + r] = row[c] }
            }
        }
        switch size {
        case 1: copy(UInt8.self)
        case 2: copy(UInt16.self)
        case 4: copy(UInt32.self)
        default: copy(UInt64.self)
        }
        return WeightMatrix(rows: range.count, columns: rows, dtype: dtype, base: UnsafeRawPointer(storage.pointer), owner: storage)
    }

    /// The whole matrix widened to F32 (dequantised for FP8).
    public func floatValues() -> [Float] {
        [Float](unsafeUninitializedCapacity: rows * columns) { buffer, count in
            widenRows(0..<rows, into: buffer.baseAddress!)
            count = rows * columns
        }
    }

    /// Rows `range` widened (and dequantised) to F32, row-major, into `destination`.
    public func widenRows(_ range: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        if let blockFormat {
            for (i, r) in range.enumerated() {
                blockFormat.dequantize(UnsafeRawBufferPointer(start: rowPointer(r), count: rowBytes),
                                       into: UnsafeMutableBufferPointer(start: destination + i * columns, count: columns))
            }
        } else if dtype == .float8E4M3, let scales = blockScales {
            for (i, r) in range.enumerated() {
                let row = rowPointer(r).assumingMemoryBound(to: UInt8.self)
                let out = destination + i * columns
                for c in 0..<columns { out[c] = FP8E4M3.float(row[c]) * scales.scale(row: r, column: c) }
            }
        } else {
            convertToFloat(rowPointer(range.lowerBound), dtype: dtype, count: range.count * columns, into: destination)
        }
    }
}

/// Heap memory with a chosen alignment, freed when the last reference goes.
///
/// `@unchecked Sendable`: written once while it is being filled, read-only afterwards.
public final class OwnedBytes: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let byteCount: Int

    public init(byteCount: Int, alignment: Int = 64) {
        self.byteCount = byteCount
        self.pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: alignment)
    }

    deinit { pointer.deallocate() }
}

/// Block-wise dequantisation scales: element (r, c) is multiplied by
/// `values[((rowOffset + r) / blockRows) * blockColumnCount + c / blockColumns]`.
///
/// `@unchecked Sendable`: read-only memory kept alive by `owner`.
public struct BlockScales: @unchecked Sendable {
    public let values: UnsafePointer<Float>
    public let blockRows: Int
    public let blockColumns: Int
    /// Column blocks per row of blocks (ceil(columns / blockColumns)).
    public let blockColumnCount: Int
    public let rowOffset: Int
    public let owner: AnyObject?

    public init(values: UnsafePointer<Float>, blockRows: Int, blockColumns: Int, blockColumnCount: Int, rowOffset: Int = 0, owner: AnyObject?) {
        self.values = values
        self.blockRows = blockRows
        self.blockColumns = blockColumns
        self.blockColumnCount = blockColumnCount
        self.rowOffset = rowOffset
        self.owner = owner
    }

    @inlinable
    public func scale(row: Int, column: Int) -> Float {
        values[((rowOffset + row) / blockRows) * blockColumnCount + column / blockColumns]
    }

    func offset(rows: Int) -> BlockScales {
        BlockScales(values: values, blockRows: blockRows, blockColumns: blockColumns, blockColumnCount: blockColumnCount,
                    rowOffset: rowOffset + rows, owner: owner)
    }
}

/// FP8 E4M3 (OCP "e4m3fn": 1 sign, 4 exponent with bias 7, 3 mantissa; no infinities).
public enum FP8E4M3 {
    /// Exact: placing the 7 low bits at f32 bit 20 gives 2^(e-127)(1+m/8) (or the matching
    /// subnormal), and 2^120 moves the bias from 127 to 7.
    @inlinable
    public static func float(_ byte: UInt8) -> Float {
        Float(bitPattern: UInt32(byte & 0x80) << 24 | UInt32(byte & 0x7F) << 20) * 0x1p120
    }

    /// Round-to-nearest-even encoding, saturating at ±448 (NaN stays NaN): the hot-path
    /// form of `byte`, on the float's bits. Normal results keep f32 mantissa bits 22–20,
    /// rounded at bit 20 with the carry running into the exponent; below 2^-6 the value is
    /// a multiple of 2^-9 (subnormal E4M3, or 2^-6 itself when it rounds up).
    @inlinable
    public static func encode(_ value: Float) -> UInt8 {
        let bits = value.bitPattern
        let sign = UInt8(truncatingIfNeeded: bits >> 24) & 0x80
        let magnitude = bits & 0x7FFF_FFFF
        if magnitude > 0x7F80_0000 { return sign | 0x7F }
        if magnitude >= 0x43E0_0000 { return sign | 0x7E }
        if magnitude < 0x3C80_0000 {
            return sign | UInt8((Float(bitPattern: magnitude) * 512).rounded(.toNearestOrEven))
        }
        let rounded = (magnitude &+ 0x7_FFFF &+ ((magnitude >> 20) & 1)) >> 20
        return sign | UInt8(min(rounded - (120 << 3), 0x7E))
    }

    /// Round-to-nearest-even encoding by search over every code, saturating at ±448: the
    /// specification `encode` is tested against.
    public static func byte(_ value: Float) -> UInt8 {
        let sign: UInt8 = value.sign == .minus ? 0x80 : 0
        let magnitude = min(abs(value), 448)
        var best: UInt8 = 0
        var bestError = Float.infinity
        for candidate in UInt8(0)...0x7E {
            let error = abs(float(candidate) - magnitude)
            if error < bestError || (error == bestError && candidate & 1 == 0) {
                best = candidate
                bestError = error
            }
        }
        return sign | best
    }
}
