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

    public init(rows: Int, columns: Int, dtype: DType, base: UnsafeRawPointer, owner: AnyObject?) {
        precondition(dtype.isKernelWeightType, "WeightMatrix needs F32, F16 or BF16, got \(dtype.rawValue)")
        self.rows = rows
        self.columns = columns
        self.dtype = dtype
        self.base = base
        self.owner = owner
    }

    /// A matrix that owns a copy of `values` (row-major, `rows × columns`) as F32.
    public init(rows: Int, columns: Int, float32 values: [Float]) {
        precondition(values.count == rows * columns)
        let storage = OwnedBytes(byteCount: values.count * 4, alignment: 64)
        values.withUnsafeBytes { storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        self.init(rows: rows, columns: columns, dtype: .float32, base: UnsafeRawPointer(storage.pointer), owner: storage)
    }

    public var byteCount: Int { rows * columns * dtype.byteSize }

    @inlinable
    public func rowPointer(_ row: Int) -> UnsafeRawPointer {
        base + row * columns * dtype.byteSize
    }

    /// Rows `range` as a matrix sharing the same memory.
    public func rows(_ range: Range<Int>) -> WeightMatrix {
        WeightMatrix(rows: range.count, columns: columns, dtype: dtype, base: rowPointer(range.lowerBound), owner: owner)
    }

    /// The whole matrix widened to F32 (tests and small tensors only).
    public func floatValues() -> [Float] {
        floatArray(base, dtype: dtype, count: rows * columns)
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
