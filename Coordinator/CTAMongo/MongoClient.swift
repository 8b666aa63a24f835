internal import CMongoC

/// Placeholder while the MongoDB client is written.
public enum MongoPlaceholder {
    public static func libraryVersion() -> String { String(cString: mongoc_get_version()) }
}
