"""From satellite products (Landsat, Sentinel-2, HLS, STAC) to a scene whose bands follow a recipe.

* :mod:`~geoglacier.products.recipes`: band names, derived indices, the scene/checkpoint check;
* :mod:`~geoglacier.products.metadata`: acquisition tags (date, sensor, product id);
* :mod:`~geoglacier.products.product`: what a product offers (band files, quality layer);
* :mod:`~geoglacier.products.quality`: cloud and bad-pixel masks (QA_PIXEL, SCL, Fmask);
* :mod:`~geoglacier.products.landsat`, :mod:`~geoglacier.products.sentinel2`,
  :mod:`~geoglacier.products.stac`, :mod:`~geoglacier.products.hls`: the product readers;
* :mod:`~geoglacier.products.grid`: the output grid (CRS, pixel size, extent);
* :mod:`~geoglacier.products.stack`: the tile-by-tile stacking to a COG.
"""
