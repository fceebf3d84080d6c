/// One of ggml's constant lookup tables (GGMLTables.swift), in memory allocated once and
/// never written or freed.
///
/// Hot loops take `base` once and index it directly (no bounds check, no array
/// retain/release); everything else can use it as a collection.
///
/// `@unchecked Sendable`: the memory is initialised in `init` and immutable afterwards,
/// and it lives for the rest of the process (the tables are `static let`s), so any thread
/// may read it at any time.
public struct GGMLTable<Element: Sendable>: RandomAccessCollection, @unchecked Sendable {
    /// The first entry; `count` entries follow.
    public let base: UnsafePointer<Element>
    public let count: Int

    /// Copies `values` into memory that is never freed.
    public init(_ values: [Element]) {
        let memory = UnsafeMutablePointer<Element>.allocate(capacity: Swift.max(values.count, 1))
        _ = UnsafeMutableBufferPointer(start: memory, count: values.count).initialize(from: values)
        base = UnsafePointer(memory)
        count = values.count
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    @inlinable
    public subscript(position: Int) -> Element {
        precondition(position >= 0 && position < count, "table index \(position) out of 0..<\(count)")
        return base[position]
    }

    /// Calls `body` with the table as a buffer (for APIs that take one).
    @inlinable
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Element>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: base, count: count))
    }
}
