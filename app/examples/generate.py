"""Regenerate the bundled example images: `python -m app.examples.generate`.

Four scenes from the project's own shapes generator (what the bundled captioners learn from), named by
one of their reference captions, one easy-VQA-style image (a single flat shape on a pale ground)
for the bundled question answerer, and three real photos from scikit-image's sample data (public domain
or CC0, listed in SOURCES.md; scikit-image is a test dependency) for the Flickr8k models."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from captioning.data.shapes import captions_for, make_scene

SEED, SIZE = 7, 160
SCENE_SIZE = 128  # the size `captioning prepare shapes` draws (the bundled captioners named every object in
                  # 26 of 40 such scenes, but in 13 of 40 drawn at 160 px: sharper edges and finer noise)
SCENES = {0: 3, 1: 3, 9: 0, 22: 0}   # scene index -> which reference caption names the file
EASY_VQA = ("easy-vqa style teal rectangle", (0, 150, 150))
# file stem -> skimage.data function: scenes of the kind Flickr8k shows (people, animals), and two it never
# shows (a coffee cup, a rocket launch) that the encoder's classifier names for the caption (docs/app.md).
PHOTOS = {"cat-chelsea": "chelsea", "astronaut-eileen-collins": "astronaut", "photographer-camera": "camera",
          "coffee-cup": "coffee", "rocket-launch": "rocket"}
PHOTO_SIZE = 480


def write_photos(folder: Path) -> None:
    import skimage.data

    for stem, function in PHOTOS.items():
        image = Image.fromarray(getattr(skimage.data, function)()).convert("RGB")
        image.thumbnail((PHOTO_SIZE, PHOTO_SIZE))
        image.save(folder / f"{stem}.jpg", quality=88, optimize=True)
        print(folder / f"{stem}.jpg")


def easy_vqa_like(colour: tuple[int, int, int], size: int = SIZE) -> Image.Image:
    image = Image.new("RGB", (size, size), (236, 246, 244))
    ImageDraw.Draw(image).rectangle((0.3 * size, 0.4 * size, 0.75 * size, 0.7 * size), fill=colour)
    return image


def file_name(caption: str) -> str:
    return caption.replace(",", "").replace(" ", "-") + ".png"


def main(folder: Path = Path(__file__).parent) -> None:
    for old in folder.glob("*.png"):
        old.unlink()
    for index, which in SCENES.items():
        image, objects = make_scene(SEED, index, SCENE_SIZE)
        path = folder / file_name(captions_for(objects, SCENE_SIZE)[which])
        image.save(path, optimize=True)
        print(path)
    name, colour = EASY_VQA
    easy_vqa_like(colour).save(folder / file_name(name), optimize=True)
    print(folder / file_name(name))
    write_photos(folder)


if __name__ == "__main__":
    main()
