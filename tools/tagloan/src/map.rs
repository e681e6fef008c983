//! `tagloan map`: a picture of physical memory, one cell per frame (or per
//! run of frames on large platforms), coloured by state, with a legend.

use std::path::Path;
use std::process::ExitCode;

use tagloan_pool::PoolKind;
use tagloan_scenarios::Run;
use tagloan_sim::FrameView;

use crate::RunArgs;

/// The states, their colours and their names, in legend order.
pub const LEGEND: [(FrameView, [u8; 3], &str); 9] = [
    (FrameView::DataFree, [0xd9, 0xd9, 0xd9], "data memory free"),
    (
        FrameView::OwnedUntagged,
        [0x3b, 0x7d, 0xd8],
        "owned, untagged",
    ),
    (FrameView::OwnedTagged, [0x2c, 0xa0, 0x2c], "owned, tagged"),
    (
        FrameView::MetadataNone,
        [0xf2, 0xc1, 0x4e],
        "metadata-none (awaiting tags)",
    ),
    (FrameView::Pinned, [0x8e, 0x44, 0xad], "pinned"),
    (FrameView::TagFree, [0xf5, 0xe6, 0xc8], "tag storage free"),
    (
        FrameView::TagLent,
        [0xff, 0x7f, 0x0e],
        "tag storage lent as data",
    ),
    (
        FrameView::TagReserved,
        [0xb0, 0x3a, 0x2e],
        "tag storage reserved for tags",
    ),
    (FrameView::Server, [0x22, 0x22, 0x22], "server's own"),
];

const BACKGROUND: [u8; 3] = [0xff, 0xff, 0xff];
const INK: [u8; 3] = [0x10, 0x10, 0x10];
/// Cells per row.
pub const COLUMNS: u32 = 256;
/// Most cells a section draws; more frames share a cell.
const MAX_CELLS: u64 = 65_536;
const MARGIN: u32 = 8;
const LINE: u32 = 14;

fn colour(view: FrameView) -> [u8; 3] {
    LEGEND
        .iter()
        .find(|(v, _, _)| *v == view)
        .map_or(INK, |(_, c, _)| *c)
}

/// A section of the picture: a run of frames of one pool.
struct Section {
    title: String,
    cells: Vec<FrameView>,
    frames_per_cell: u64,
}

/// The picture, before encoding.
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pixels: Vec<u8>,
}

impl Picture {
    fn new(width: u32, height: u32) -> Picture {
        let mut pixels = Vec::with_capacity((width * height * 3) as usize);
        for _ in 0..width * height {
            pixels.extend_from_slice(&BACKGROUND);
        }
        Picture {
            width,
            height,
            pixels,
        }
    }

    fn fill(&mut self, x: u32, y: u32, w: u32, h: u32, rgb: [u8; 3]) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                let at = ((yy * self.width + xx) * 3) as usize;
                self.pixels[at..at + 3].copy_from_slice(&rgb);
            }
        }
    }

    fn text(&mut self, x: u32, y: u32, text: &str) {
        use font8x8::legacy::BASIC_LEGACY;
        for (i, ch) in text.chars().enumerate() {
            let glyph = BASIC_LEGACY
                .get(ch as usize)
                .copied()
                .unwrap_or(BASIC_LEGACY[b'?' as usize]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        self.fill(x + i as u32 * 8 + col, y + row as u32, 1, 1, INK);
                    }
                }
            }
        }
    }
}

fn sections(views: &[FrameView], layout: &tagloan_pool::Layout) -> Vec<Section> {
    let mut spans: Vec<(String, Vec<FrameView>)> = Vec::new();
    let mut current: Option<(usize, PoolKind)> = None;
    for (index, view) in views.iter().enumerate() {
        let Some(location) = layout.locate(index as u32) else {
            continue;
        };
        let key = (location.region, location.pool);
        if current != Some(key) {
            current = Some(key);
            let name = match location.pool {
                PoolKind::Data => "data memory",
                PoolKind::Tag => "tag storage",
            };
            let pfn = layout.pfn(index as u32).unwrap_or(0);
            spans.push((
                format!("region {} {name} at {:#x}", location.region, pfn * 4096),
                Vec::new(),
            ));
        }
        spans.last_mut().expect("pushed above").1.push(*view);
    }
    spans
        .into_iter()
        .map(|(title, frames)| {
            let per = (frames.len() as u64)
                .div_ceil(MAX_CELLS)
                .next_power_of_two();
            let cells = frames
                .chunks(per as usize)
                .map(|chunk| {
                    // The most frequent state of the cell's frames; ties go
                    // to the later (more notable) legend entry.
                    let mut counts = [0usize; LEGEND.len()];
                    for v in chunk {
                        if let Some(i) = LEGEND.iter().position(|(l, _, _)| l == v) {
                            counts[i] += 1;
                        }
                    }
                    let best = (0..LEGEND.len())
                        .max_by_key(|&i| (counts[i], i))
                        .unwrap_or(0);
                    LEGEND[best].0
                })
                .collect();
            Section {
                title: format!(
                    "{title}, {} frames{}",
                    frames.len(),
                    if per > 1 {
                        format!(", {per} per cell")
                    } else {
                        String::new()
                    }
                ),
                cells,
                frames_per_cell: per,
            }
        })
        .collect()
}

/// Cell size in pixels for the largest section.
fn cell_px(sections: &[Section]) -> u32 {
    let rows = sections
        .iter()
        .map(|s| (s.cells.len() as u32).div_ceil(COLUMNS))
        .max()
        .unwrap_or(1);
    if rows <= 160 {
        3
    } else {
        2
    }
}

/// Lays the picture out and draws it.
pub fn draw(views: &[FrameView], layout: &tagloan_pool::Layout, title: &str) -> Picture {
    let sections = sections(views, layout);
    let cell = cell_px(&sections);
    let width = (2 * MARGIN + COLUMNS * cell).max(2 * MARGIN + 8 * 64);
    let mut height = MARGIN + LINE;
    for s in &sections {
        height += LINE + (s.cells.len() as u32).div_ceil(COLUMNS) * cell + MARGIN;
    }
    height += LEGEND.len() as u32 * LINE + MARGIN;
    let mut picture = Picture::new(width, height);
    picture.text(MARGIN, MARGIN, title);
    let mut y = MARGIN + LINE;
    for s in &sections {
        picture.text(MARGIN, y + 2, &s.title);
        y += LINE;
        for (i, view) in s.cells.iter().enumerate() {
            let (col, row) = (i as u32 % COLUMNS, i as u32 / COLUMNS);
            picture.fill(
                MARGIN + col * cell,
                y + row * cell,
                cell,
                cell,
                colour(*view),
            );
        }
        y += (s.cells.len() as u32).div_ceil(COLUMNS) * cell + MARGIN;
        let _ = s.frames_per_cell;
    }
    for (view, rgb, name) in LEGEND {
        let count = views.iter().filter(|v| **v == view).count();
        picture.fill(MARGIN, y + 1, 10, 10, rgb);
        picture.text(MARGIN + 16, y + 2, &format!("{name}: {count}"));
        y += LINE;
    }
    picture
}

fn write_png(picture: &Picture, out: &Path) -> Result<(), String> {
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut encoder =
        png::Encoder::new(std::io::BufWriter::new(file), picture.width, picture.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| format!("{}: {e}", out.display()))?;
    writer
        .write_image_data(&picture.pixels)
        .map_err(|e| format!("{}: {e}", out.display()))
}

fn hex(rgb: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2])
}

fn write_svg(
    views: &[FrameView],
    layout: &tagloan_pool::Layout,
    title: &str,
    out: &Path,
) -> Result<(), String> {
    use svg::node::element::{Rectangle, Text};
    let sections = sections(views, layout);
    let cell = cell_px(&sections);
    let width = (2 * MARGIN + COLUMNS * cell).max(2 * MARGIN + 8 * 64);
    let mut doc = svg::Document::new()
        .set("font-family", "monospace")
        .set("font-size", 10);
    doc = doc.add(Text::new(title).set("x", MARGIN).set("y", MARGIN + 10));
    let mut y = MARGIN + LINE;
    for s in &sections {
        doc = doc.add(
            Text::new(s.title.as_str())
                .set("x", MARGIN)
                .set("y", y + 10),
        );
        y += LINE;
        // One rectangle per run of equal cells in a row keeps the file small.
        let rows = (s.cells.len() as u32).div_ceil(COLUMNS);
        for row in 0..rows {
            let start = (row * COLUMNS) as usize;
            let end = (start + COLUMNS as usize).min(s.cells.len());
            let mut col = start;
            while col < end {
                let view = s.cells[col];
                let run = s.cells[col..end].iter().take_while(|v| **v == view).count();
                doc = doc.add(
                    Rectangle::new()
                        .set("x", MARGIN + (col - start) as u32 * cell)
                        .set("y", y + row * cell)
                        .set("width", run as u32 * cell)
                        .set("height", cell)
                        .set("fill", hex(colour(view))),
                );
                col += run;
            }
        }
        y += rows * cell + MARGIN;
    }
    for (view, rgb, name) in LEGEND {
        let count = views.iter().filter(|v| **v == view).count();
        doc = doc
            .add(
                Rectangle::new()
                    .set("x", MARGIN)
                    .set("y", y + 1)
                    .set("width", 10)
                    .set("height", 10)
                    .set("fill", hex(rgb)),
            )
            .add(
                Text::new(format!("{name}: {count}"))
                    .set("x", MARGIN + 16)
                    .set("y", y + 10),
            );
        y += LINE;
    }
    doc = doc
        .set("width", width)
        .set("height", y + MARGIN)
        .set("viewBox", (0, 0, width, y + MARGIN));
    svg::save(out, &doc).map_err(|e| format!("{}: {e}", out.display()))
}

/// Runs `tagloan map`.
pub fn map(args: &RunArgs, at: Option<u64>, out: &Path) -> Result<ExitCode, String> {
    let kind = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    if kind != "png" && kind != "svg" {
        return Err(format!("{}: --out must end in .png or .svg", out.display()));
    }
    let (scenario, mut options) = crate::run::prepare(args)?;
    if let Some(step) = at {
        options.max_steps = step;
    }
    let mut run = Run::start(scenario.name(), scenario.plans(options.seed), &options)
        .map_err(|e| e.to_string())?;
    // Without --at: the picture is taken where tag storage lent as data plus
    // memory mapped tagged peaked (the last of equal peaks): lending and
    // recall are both visible there.
    let mut best: Option<(u64, u64, Vec<FrameView>)> = None;
    crate::run::drive(&mut run, &options, |run| {
        if at.is_some() {
            return;
        }
        let audit = run.sim.audit();
        let score = audit.counter("memory_server", "tag_frames_lent")
            + audit.counter("memory_server", "frames_tagged");
        if best.as_ref().is_none_or(|(peak, _, _)| score >= *peak) {
            let views = run.sim.frame_views();
            best = Some((score, run.sim.steps(), views));
        }
    });
    let (step, views) = match best {
        Some((_, step, views)) if at.is_none() => (step, views),
        _ => (run.sim.steps(), run.sim.frame_views()),
    };
    let layout = run.sim.system().expect("a tagloan system").platform.layout;
    let title = format!(
        "tagloan map: scenario {}, seed {}, step {step}",
        scenario.name(),
        options.seed
    );
    if kind == "png" {
        let picture = draw(&views, &layout, &title);
        write_png(&picture, out)?;
        println!(
            "{}: {}x{} PNG, {} frames",
            out.display(),
            picture.width,
            picture.height,
            views.len()
        );
    } else {
        write_svg(&views, &layout, &title, out)?;
        println!("{}: SVG, {} frames", out.display(), views.len());
    }
    println!("{title}");
    for (view, _, name) in LEGEND {
        println!("  {name}: {}", views.iter().filter(|v| **v == view).count());
    }
    Ok(ExitCode::SUCCESS)
}
