/// The CT windows of the seed work (centre / width in Hounsfield units).
enum WindowPreset: String, CaseIterable {
    case lung
    case vessel
    case softTissue = "soft-tissue"
    case bone

    var window: Window {
        switch self {
        case .lung: return Window(centre: -600, width: 1500)
        case .vessel: return Window(centre: 100, width: 700)
        case .softTissue: return Window(centre: 50, width: 350)
        case .bone: return Window(centre: 300, width: 2000)
        }
    }
}
