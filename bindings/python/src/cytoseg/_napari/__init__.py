"""napari plugin of cytoseg (npe2 manifest: cytoseg/napari.yaml). Imports Qt and napari; the
``cytoseg`` package itself does not."""
