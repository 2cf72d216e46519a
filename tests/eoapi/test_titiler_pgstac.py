"""titiler-pgstac renders geoetl's catalogued COGs: item tiles and collection mosaics.

geoetl's STAC assets hold object keys (``silver/cogs/<collection>/<item>_analysis.tif``),
relative to its storage root, so these servers run with that root as their working
directory; ``test_relative_asset_hrefs_need_the_storage_root`` shows what happens
anywhere else.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import httpx
import numpy as np
import pytest
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from tests.eoapi.conftest import Deployment, eoapi_servers

pytestmark = pytest.mark.postgres

ZOOM = 10
ELEV = {"assets": "data", "rescale": "141,547"}  # elev.tif: int16 heights 141..547


def _tile(deployment: Deployment, collection: str, item: str) -> Any:
    """The tile (a morecantile Tile) at ``ZOOM`` under the middle of an item's bbox."""
    import morecantile  # titiler's; missing tools fail the deployment fixture first

    stac = deployment.base("stac")
    found = httpx.get(f"{stac}/collections/{collection}/items/{item}", timeout=30).json()
    minx, miny, maxx, maxy = found["bbox"]
    return morecantile.tms.get("WebMercatorQuad").tile((minx + maxx) / 2, (miny + maxy) / 2, ZOOM)


def _path(tile: Any, fmt: str) -> str:
    return f"tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.{fmt}"


def _png(response: httpx.Response) -> np.ndarray[Any, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG has no transform
        with MemoryFile(response.content) as memory, memory.open() as png:
            assert png.driver == "PNG"
            return np.asarray(png.read())  # (bands, rows, columns)


def _has_data(image: np.ndarray[Any, Any]) -> bool:
    """True if some pixel is opaque (titiler's PNG alpha band is the data mask)."""
    return bool(image.shape[0] in (2, 4) and (image[-1] > 0).any())


def test_an_item_tile_of_a_catalogued_cog(deployment: Deployment) -> None:
    titiler = deployment.base("titiler")
    tile = _tile(deployment, "rasters-pub", "elev")
    base = f"{titiler}/collections/rasters-pub/items/elev"
    image = _png(httpx.get(f"{base}/{_path(tile, 'png')}", params=ELEV, timeout=30))
    assert image.shape[1:] == (256, 256)
    assert _has_data(image)
    raw = httpx.get(f"{base}/{_path(tile, 'npy')}", params={"assets": "data"}, timeout=30)
    assert raw.status_code == 200, raw.text
    array = np.load(io.BytesIO(raw.content))
    data, mask = array[:-1], array[-1]  # titiler's NPY: the bands, then the mask
    assert data.shape == (1, 256, 256)
    valid = data[0][mask > 0]
    assert valid.size > 0
    assert 141 <= valid.min() <= valid.max() <= 547


def test_a_mosaic_of_a_collection_and_of_a_registered_search(deployment: Deployment) -> None:
    titiler = deployment.base("titiler")
    tile = _tile(deployment, "rasters-pub", "elev")
    collection = httpx.get(
        f"{titiler}/collections/rasters-pub/{_path(tile, 'png')}", params=ELEV, timeout=30
    )
    assert _has_data(_png(collection))

    registered = httpx.post(
        f"{titiler}/searches/register", json={"collections": ["rasters-pub"]}, timeout=30
    )
    assert registered.status_code == 200, registered.text
    search_id = registered.json()["id"]
    mosaic = httpx.get(f"{titiler}/searches/{search_id}/{_path(tile, 'png')}", params=ELEV)
    assert _has_data(_png(mosaic))
    assert np.array_equal(_png(mosaic), _png(collection))


def test_the_reader_renders_only_public_rasters(deployment: Deployment) -> None:
    as_reader = deployment.base("titiler", "reader")
    as_postgres = deployment.base("titiler")
    public = _tile(deployment, "rasters-pub", "elev")
    hidden = _tile(deployment, "rasters-ouo", "lc")
    lc = {"assets": "data"}

    shown = httpx.get(
        f"{as_reader}/collections/rasters-pub/items/elev/{_path(public, 'png')}",
        params=ELEV,
        timeout=30,
    )
    assert _has_data(_png(shown))
    # postgres renders the ouo raster; the reader finds no such item or collection items.
    item = f"collections/rasters-ouo/items/lc/{_path(hidden, 'png')}"
    assert httpx.get(f"{as_postgres}/{item}", params=lc, timeout=30).status_code == 200
    assert httpx.get(f"{as_reader}/{item}", params=lc, timeout=30).status_code == 404
    mosaic = f"collections/rasters-ouo/{_path(hidden, 'png')}"
    assert _has_data(_png(httpx.get(f"{as_postgres}/{mosaic}", params=lc, timeout=30)))
    assert httpx.get(f"{as_reader}/{mosaic}", params=lc, timeout=30).status_code in (204, 404)
    # A search registered by the reader for everything still renders public data only.
    registered = httpx.post(f"{as_reader}/searches/register", json={}, timeout=30)
    assert registered.status_code == 200, registered.text
    search = f"searches/{registered.json()['id']}/{_path(hidden, 'png')}"
    assert httpx.get(f"{as_reader}/{search}", params=lc, timeout=30).status_code in (204, 404)


def test_titiler_pgstac_opens_cogs_from_anywhere(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    identities = {"postgres": ("postgres", "unused")}
    with eoapi_servers(deployment.url, identities, elsewhere, elsewhere / "logs") as servers:
        titiler = servers[("titiler", "postgres")]
        tile = _tile(deployment, "rasters-pub", "elev")
        answer = httpx.get(
            f"{titiler}/collections/rasters-pub/items/elev/{_path(tile, 'png')}",
            params=ELEV,
            timeout=30,
        )
    assert answer.status_code == 200, answer.text
